"""The manifest loads in Stash and agrees with the code's tables (schema, tasks, hooks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from base.settings import SCHEMA, SCHEMA_BY_NAME
from emulators.host import ManifestError, load_manifest
from plugin import manifest as generated
from plugin.dispatch import HOOKS, TASKS

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "Stash2Plex.yml"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load_manifest(MANIFEST)


def test_only_keys_stash_knows(manifest: dict) -> None:
    assert set(manifest) <= {"name", "description", "url", "version", "interface", "exec", "errLog",
                             "tasks", "hooks", "ui", "settings"}


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "Bad.yml"
    bad.write_text(MANIFEST.read_text() + "requires: [PythonDepManager]\n")
    with pytest.raises(ManifestError, match="requires"):
        load_manifest(bad)


def test_raw_interface_through_plugin_dir(manifest: dict) -> None:
    assert manifest["interface"] == "raw"
    assert manifest["exec"][0] in ("python", "python3")
    assert manifest["exec"][1] == "{pluginDir}/Stash2Plex.py"
    assert MANIFEST.stem == "Stash2Plex"


def test_version_matches_community_validator(manifest: dict) -> None:
    import re

    assert re.fullmatch(r"\d+(\.\d+)?(\.\d+)?", str(manifest["version"]))


def test_hooks_are_the_dispatch_table(manifest: dict) -> None:
    triggers = [t for hook in manifest["hooks"] for t in hook["triggeredBy"]]
    assert sorted(triggers) == sorted(HOOKS)
    assert {"Scene.Update.Post", "Scene.Create.Post"} <= set(triggers)


def test_tasks_are_the_dispatch_table(manifest: dict) -> None:
    modes = [task["defaultArgs"]["mode"] for task in manifest["tasks"]]
    assert modes == list(TASKS)
    assert len({task["name"] for task in manifest["tasks"]}) == len(modes), "task names must be unique"
    required = {"all", "recent", "process_queue", "queue_status", "clear_queue", "clear_dlq", "purge_dlq",
                "retry_dlq", "reconcile_all", "reconcile_recent", "reconcile_7days", "health_check", "dry_run",
                "import_watch_history", "watch_history_dry_run"}
    assert set(modes) == required


def test_settings_match_schema(manifest: dict) -> None:
    declared = manifest["settings"]
    assert set(declared) == set(SCHEMA_BY_NAME), "a setting is in the manifest or the schema only"
    for name, spec in declared.items():
        assert spec["type"] == SCHEMA_BY_NAME[name].type, f"{name}: type differs"
        assert spec["displayName"], f"{name}: CommunityScripts' validator requires displayName"


def test_generated_blocks_are_current() -> None:
    """The hooks/tasks/settings blocks are exactly what `python -m plugin.manifest` renders."""
    assert generated.render() in MANIFEST.read_text(encoding="utf-8")
    assert yaml.safe_load(generated.render())["settings"].keys() == {s.name for s in SCHEMA}


def test_readme_settings_table_matches_schema() -> None:
    """The README's settings table is the schema's, row for row."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert generated.render_settings_table() in readme
    for spec in SCHEMA:
        assert f"| `{spec.name}` | {spec.type} |" in readme
