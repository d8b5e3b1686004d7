"""The release build: what the zip holds, the index Stash reads, and the notes and error lines
that make an install from Stash's UI work without a shell (issue 10, points 1, 2 and 3).

The index is parsed and the zip installed by ``release.stash_pkg``, which follows Stash's
``pkg/pkg`` package manager; the vendored wheels are pip-installed once per pin set and
cached under ``build/`` (gitignored), so only the first run ever downloads them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from base import deps
from emulators.host import load_manifest
from plugin import upgrade_note
from release import build as rb
from release import stash_pkg

ROOT = Path(__file__).resolve().parent.parent
VENDOR_CACHE = ROOT / "build"
DATE_N = "2026-01-10 08:00:00"
DATE_N1 = "2026-02-20 09:30:00"
#: import name of every vendored package: what Stash's Docker image lacks.
VENDORED = ("persistqueue", "plexapi", "tenacity", "filelock")


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> rb.Release:
    out = tmp_path_factory.mktemp("dist")
    return rb.build(out, version="0.1.0", date=DATE_N, vendor_cache=VENDOR_CACHE, log=lambda _m: None)


@pytest.fixture(scope="session")
def zip_names(release: rb.Release) -> list[str]:
    with zipfile.ZipFile(release.zip_path) as archive:
        return archive.namelist()


# --- the index, read the way Stash reads it ----------------------------------------------------


def test_index_parses_as_stash_package_list_with_right_sha_and_date(release: rb.Release) -> None:
    source = stash_pkg.Source(release.index_path)
    (pkg,) = source.packages()
    assert pkg.id == "Stash2Plex"
    assert pkg.name == "Stash2Plex"
    assert pkg.version == "0.1.0"
    assert pkg.date == datetime(2026, 1, 10, 8, 0, 0, tzinfo=timezone.utc)
    assert pkg.metadata["description"].startswith("Sync scene metadata")
    assert pkg.requires == ()
    data = source.zip_bytes(pkg)
    assert pkg.sha256 == hashlib.sha256(data).hexdigest() == release.sha256


def test_index_scalars_stay_strings_for_a_yaml_1_1_reader(tmp_path: Path) -> None:
    # 1.10 unquoted would be the float 1.1; the date unquoted a timestamp.
    text = rb.index_text("Stash2Plex", "Stash2Plex", 'say "hi": yes', "1.10", DATE_N, "Stash2Plex.zip", "ab" * 32)
    (entry,) = yaml.safe_load(text)
    assert entry["version"] == "1.10"
    assert entry["date"] == DATE_N
    assert entry["metadata"]["description"] == 'say "hi": yes'


def test_index_date_follows_source_date_epoch_in_utc() -> None:
    assert rb.build_date("1700000000") == "2023-11-14 22:13:20"
    moment = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert rb.build_date(None, now=moment) == "2026-03-01 12:00:00"


def test_bad_date_or_version_fails_the_build(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        rb.build(tmp_path, date="2026-01-10T08:00:00Z", vendor=False, log=lambda _m: None)
    with pytest.raises(rb.BuildError):
        rb.build(tmp_path, version="1.0-beta", vendor=False, log=lambda _m: None)


def test_stash_rejects_a_zip_whose_sha_differs(release: rb.Release, tmp_path: Path) -> None:
    index = tmp_path / "index.yml"
    index.write_text(release.index_path.read_text().replace(release.sha256, "0" * 64))
    (tmp_path / rb.ZIP_NAME).write_bytes(release.zip_path.read_bytes())
    with pytest.raises(stash_pkg.PackageError, match="does not match expected SHA256"):
        stash_pkg.PluginStore(tmp_path / "plugins").install(stash_pkg.Source(index), "Stash2Plex")


# --- the zip ------------------------------------------------------------------------------------


def test_zip_holds_the_manifest_entrypoint_and_every_runtime_module(zip_names: list[str]) -> None:
    assert "Stash2Plex.yml" in zip_names and "Stash2Plex.py" in zip_names
    assert "requirements.txt" in zip_names  # the dependency error line points at it
    for package in rb.PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                assert path.relative_to(ROOT).as_posix() in zip_names


def test_zip_leaves_out_tests_bench_emulators_caches_and_stray_yml(zip_names: list[str]) -> None:
    tops = {name.split("/")[0] for name in zip_names}
    assert not tops & {"tests", "bench", "emulators", "release", "docs", ".ci", ".venv", "build", "dist"}
    assert [n for n in zip_names if n.endswith(".yml")] == ["Stash2Plex.yml"]
    assert not [n for n in zip_names if "__pycache__" in n or n.endswith((".pyc", ".so", ".pyd"))]
    assert not [n for n in zip_names if n.endswith("/")]  # no directory entries
    assert not [n for n in zip_names if "/sboms/" in n or n.startswith("vendor/bin/")]


def test_zip_vendors_what_the_docker_image_lacks_and_nothing_it_has(zip_names: list[str]) -> None:
    vendored_tops = {n.split("/")[1] for n in zip_names if n.startswith("vendor/")}
    for name in VENDORED:
        assert f"vendor/{name}/__init__.py" in zip_names
    # The image's own requests and stashapi must not be shadowed by a second copy.
    assert not vendored_tops & {"requests", "stashapi", "urllib3", "certifi", "idna", "charset_normalizer"}
    # Licences travel with the code.
    assert any(n.startswith("vendor/plexapi-") and "LICENSE" in n for n in zip_names)


def test_manifest_in_zip_loads_strictly_and_carries_the_built_version(release: rb.Release, tmp_path: Path) -> None:
    with zipfile.ZipFile(release.zip_path) as archive:
        (tmp_path / "Stash2Plex.yml").write_bytes(archive.read("Stash2Plex.yml"))
    manifest = load_manifest(tmp_path / "Stash2Plex.yml")
    assert manifest["version"] == "0.1.0"
    assert manifest["exec"] == ["python", "{pluginDir}/Stash2Plex.py"]


def test_same_sources_give_the_same_bytes(release: rb.Release, tmp_path: Path) -> None:
    again = rb.build(tmp_path, version="0.1.0", date=DATE_N1, vendor_cache=VENDOR_CACHE, log=lambda _m: None)
    assert again.sha256 == release.sha256  # the date lives in the index only
    assert again.date != release.date


def test_version_override_changes_the_zip_and_the_index(release: rb.Release, tmp_path: Path) -> None:
    other = rb.build(tmp_path, version="0.2.0", date=DATE_N1, vendor_cache=VENDOR_CACHE, log=lambda _m: None)
    assert other.sha256 != release.sha256
    (pkg,) = stash_pkg.Source(other.index_path).packages()
    assert pkg.version == "0.2.0"


def test_a_vendored_yml_or_compiled_extension_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "config.yml").write_text("a: 1\n")
    with pytest.raises(rb.BuildError, match=r"\.yml"):
        rb.vendor_files(tmp_path)
    (tmp_path / "pkg" / "config.yml").unlink()
    (tmp_path / "pkg" / "_speed.so").write_bytes(b"\x7fELF")
    with pytest.raises(rb.BuildError, match="compiled extension"):
        rb.vendor_files(tmp_path)


def test_a_yml_in_a_runtime_package_is_left_out_and_reported(tmp_path: Path) -> None:
    (tmp_path / "Stash2Plex.yml").write_text((ROOT / "Stash2Plex.yml").read_text())
    (tmp_path / "Stash2Plex.py").write_text("")
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "__init__.py").write_text("")
    (tmp_path / "plugin" / "example.yml").write_text("name: x\n")
    said: list[str] = []
    built = rb.build(tmp_path / "out", root=tmp_path, date=DATE_N, vendor=False, log=said.append)
    assert "plugin/example.yml" not in built.files
    assert any("plugin/example.yml" in line for line in said)


# --- vendor pins --------------------------------------------------------------------------------


def test_vendor_pins_are_exact_satisfy_requirements_and_match_what_tests_run_with() -> None:
    pins = [Requirement(p) for p in rb.read_pins()]
    ranges = {Requirement(line).name.lower(): Requirement(line)
              for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert {p.name.lower() for p in pins} == {"persist-queue", "plexapi", "tenacity", "filelock"}
    for pin in pins:
        (spec,) = pin.specifier
        assert spec.operator == "=="
        assert ranges[pin.name.lower()].specifier.contains(spec.version), pin
        assert importlib.metadata.version(pin.name) == spec.version, f"{pin}: the suite runs another version"


def test_read_pins_refuses_a_range(tmp_path: Path) -> None:
    (tmp_path / "vendor.txt").write_text("plexapi>=4\n")
    with pytest.raises(rb.BuildError, match="exact pin"):
        rb.read_pins(tmp_path / "vendor.txt")


# --- Stash's package manager: install, upgrade, uninstall ---------------------------------------


def test_install_extracts_every_file_and_lists_it_in_the_manifest(release: rb.Release, tmp_path: Path,
                                                                  zip_names: list[str]) -> None:
    store = stash_pkg.PluginStore(tmp_path / "plugins")
    files = store.install(stash_pkg.Source(release.index_path), "Stash2Plex")
    folder = tmp_path / "plugins" / "Stash2Plex"
    assert sorted(files) == sorted(zip_names)
    assert all((folder / name).is_file() for name in files)
    manifest = store.manifest("Stash2Plex")
    assert manifest["files"] == files and manifest["date"] == DATE_N and manifest["version"] == "0.1.0"
    # Stash parses every .yml below plugins/: the only one must be ours, and it loads.
    assert [p.name for p in (tmp_path / "plugins").rglob("*.yml")] == ["Stash2Plex.yml"]
    load_manifest(folder / "Stash2Plex.yml")


def test_upgrade_is_offered_by_date_and_replaces_only_listed_files(release: rb.Release, tmp_path: Path) -> None:
    store = stash_pkg.PluginStore(tmp_path / "plugins")
    store.install(stash_pkg.Source(release.index_path), "Stash2Plex")
    folder = store.package_dir("Stash2Plex")
    (folder / "DATA_LOCATION.txt").write_text("mine")
    newer = rb.build(tmp_path / "n1", version="0.1.1", date=DATE_N1, vendor_cache=VENDOR_CACHE, log=lambda _m: None)
    assert store.upgradable(stash_pkg.Source(newer.index_path), "Stash2Plex")
    assert not store.upgradable(stash_pkg.Source(release.index_path), "Stash2Plex")
    store.install(stash_pkg.Source(newer.index_path), "Stash2Plex")
    assert store.manifest("Stash2Plex")["version"] == "0.1.1"
    assert "version: 0.1.1" in (folder / "Stash2Plex.yml").read_text()
    assert (folder / "DATA_LOCATION.txt").read_text() == "mine"


def test_uninstall_deletes_listed_files_keeps_the_rest(release: rb.Release, tmp_path: Path) -> None:
    store = stash_pkg.PluginStore(tmp_path / "plugins")
    store.install(stash_pkg.Source(release.index_path), "Stash2Plex")
    folder = store.package_dir("Stash2Plex")
    (folder / "DATA_LOCATION.txt").write_text("note")
    store.uninstall("Stash2Plex")
    left = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert left == ["DATA_LOCATION.txt"]
    assert store.installed() == []


# --- the data-location notes --------------------------------------------------------------------


def test_notes_go_to_the_data_dir_and_only_a_stash_managed_plugin_dir(tmp_path: Path) -> None:
    data = tmp_path / "config" / "plugin_data" / "Stash2Plex"
    data.mkdir(parents=True)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    written = upgrade_note.ensure_notes(data, checkout)
    assert written == [data / "README.txt"]
    assert str(data) in (data / "README.txt").read_text()
    assert not (checkout / "DATA_LOCATION.txt").exists()  # a git checkout stays clean

    managed = tmp_path / "plugins" / "Stash2Plex"
    managed.mkdir(parents=True)
    (managed / "manifest").write_text("id: Stash2Plex\n")
    assert upgrade_note.ensure_notes(data, managed) == [managed / "DATA_LOCATION.txt"]
    assert str(data) in (managed / "DATA_LOCATION.txt").read_text()
    assert upgrade_note.ensure_notes(data, managed) == []  # cheap once written


def test_notes_are_rewritten_when_outdated_and_skipped_for_data_inside_the_plugin(tmp_path: Path) -> None:
    plugin = tmp_path / "Stash2Plex"
    (plugin / "data").mkdir(parents=True)
    (plugin / "manifest").write_text("id: Stash2Plex\n")
    assert upgrade_note.ensure_notes(plugin / "data", plugin) == [plugin / "data" / "README.txt"]
    assert not (plugin / "DATA_LOCATION.txt").exists()
    (plugin / "data" / "README.txt").write_text("an old note without the mark")
    assert upgrade_note.ensure_notes(plugin / "data", plugin) == [plugin / "data" / "README.txt"]


# --- the missing-dependency line ----------------------------------------------------------------


def test_missing_dependency_names_every_missing_package_and_a_target_install(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())
    absent = {"plexapi", "tenacity"}
    err = deps.missing_dependency(ModuleNotFoundError("No module named 'plexapi'", name="plexapi.server"),
                                  tmp_path, importable=lambda n: n not in absent)
    assert err is not None
    text = str(err)
    assert "\n" not in text
    assert "'plexapi', 'tenacity'" in text
    assert f'--target "{tmp_path / "vendor"}"' in text
    assert '"plexapi>=4.18.3,<4.19" "tenacity>=9.0,<10"' in text
    assert "git" not in text.replace("no git", "")


def test_missing_dependency_ignores_our_own_modules(tmp_path: Path) -> None:
    assert deps.missing_dependency(ModuleNotFoundError("x", name="worker.background"), tmp_path) is None


def test_requirement_specs_reads_names_case_insensitively() -> None:
    specs = deps.requirement_specs("# c\nPlexAPI >= 4.18 , <5  # why\n\nfilelock>=3.13,<5\n")
    assert specs == {"plexapi": "PlexAPI>=4.18,<5", "filelock": "filelock>=3.13,<5"}


# --- the one command and the docs ---------------------------------------------------------------


def test_one_command_builds_zip_and_index(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "release.build", "--out", str(tmp_path), "--date", DATE_N,
                           "--vendor-cache", str(VENDOR_CACHE)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (pkg,) = stash_pkg.Source(tmp_path / "index.yml").packages()
    assert pkg.sha256 == hashlib.sha256((tmp_path / "Stash2Plex.zip").read_bytes()).hexdigest()
    assert pkg.sha256 in done.stdout
    bad = subprocess.run([sys.executable, "-m", "release.build", "--out", str(tmp_path), "--version", "x",
                          "--no-vendor"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("release build failed:")


def test_install_guide_matches_the_code() -> None:
    from base import datadir

    guide = (ROOT / "docs" / "INSTALL.md").read_text()
    for needle in ("python3 -m release.build --out dist", "plugin_data/Stash2Plex", datadir.ENV_OVERRIDE,
                   datadir.DB_FILE, upgrade_note.PLUGIN_NOTE, upgrade_note.DATA_NOTE, "--target",
                   "index.yml", "path_map", "/root/.stash/plugins"):
        assert needle in guide, needle
    for pin in rb.read_pins():
        assert Requirement(pin).name in guide.lower()
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Install into Stash"):readme.index("### Settings")]
    assert "docs/INSTALL.md" in section and "release.build" in section


def test_ref_builds_from_a_commit_without_untracked_files(tmp_path: Path) -> None:
    import subprocess

    tree = rb.export_ref("HEAD", tmp_path / "tree")
    tracked = set(subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True,
                                 check=True).stdout.split())
    built = rb.build(tmp_path / "out", root=tree, date=DATE_N, vendor=False, log=lambda _m: None)
    assert built.files and set(built.files) <= tracked
    with pytest.raises(rb.BuildError, match="git archive"):
        rb.export_ref("no-such-ref-anywhere", tmp_path / "bad")
