"""Installing, upgrading and uninstalling the release the way Stash does (issue 10, points 2, 3).

* Upgrade: version N is the newest commit whose state database has an older schema than the
  working tree (a real earlier release, built from ``git archive``), so the upgrade crosses a
  real migration. N's own code, run from its installed folder, creates pending jobs, a dead
  letter and ledger rows; Stash's package manager (``release.stash_pkg``) upgrades to N+1;
  N+1's code, run from the same folder, finds everything and has migrated the database.
* Uninstall leaves the data and a note saying where it is.
* The official Docker image: a fresh virtual environment with only ``requests`` and
  ``stashapp-tools`` runs the installed zip through the Stash host.

The plugin's code always runs as a subprocess from the installed folder (never imported into
this process), so what is tested is what the zip ships.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from emulators.host import RunResult, StashHost
from release import build as rb
from release import stash_pkg
from sync_queue.schema import SCHEMA_VERSION
from tests.secret_audit import AUDIT

ROOT = Path(__file__).resolve().parent.parent
VENDOR_CACHE = ROOT / "build"
DATE_N = "2026-01-10 08:00:00"
DATE_N1 = "2026-02-20 09:30:00"
T0 = 1_700_000_000.0
PLUGIN_ID = "Stash2Plex"
#: A loopback port nothing listens on: runs that would talk to Stash fail fast and cleanly.
DEAD_PORT = 9

#: Run inside the installed plugin folder's code: seed state with N, inspect it with N+1.
STATE_TOOL = r'''
import json, sqlite3, sys
from pathlib import Path
plugin, data, action = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
sys.path[:0] = [str(plugin), str(plugin / "vendor")]
import sync_queue
from sync_queue.jobs import JobQueue
T0 = 1_700_000_000.0
q = JobQueue(data)
# The tool runs on release N (an older commit) and on N+1: it speaks both queue APIs, the
# per-table handles (q.ledger, q.dlq, q.report) and the methods on JobQueue before them.
split = hasattr(q, "report")
ledger_put = q.ledger.put if split else q.ledger_put
if action == "seed":
    for scene in (1, 2, 3):
        q.enqueue(scene, "hook", T0)
    job = q.take_due(T0)
    q.dead_letter(job, "PlexNotFound", "not in Plex", T0)
    ledger_put(10, "hash-10", "501", "p10", None, {"title": "Ten"}, T0)
    ledger_put(11, "hash-11", "502", None, None, {"title": "Eleven"}, T0)
counts = (q.report.counts if split else q.counts)(T0 + 1)
out = {
    "code": sync_queue.__file__,
    "due": counts.due, "dlq": counts.dlq, "ledger": counts.ledger,
    "dead": [(d.scene_id, d.error_class, d.message) for d in (q.dlq.list_all if split else q.dlq_list)()],
    "ledger_rows": sorted((e.scene_id, e.fields_hash, e.plex_key, e.written)
                          for e in (q.ledger.iterate if split else q.ledger_iter)()),
}
if action == "take":
    taken = []
    while (job := q.take_due(T0 + 1)) is not None:
        q.complete(job, T0 + 1)
        taken.append(job.scene_id)
    out["taken"] = taken
q.close(compact=False)
conn = sqlite3.connect(str(data / "stash2plex.db"))
out["schema"] = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
print(json.dumps(out))
'''

#: Import every runtime module of the installed plugin, report where dependencies came from.
IMPORT_TOOL = r'''
import importlib, json, sys
from pathlib import Path
plugin = Path(sys.argv[1])
bare = {}
for name in ("plexapi", "persistqueue", "tenacity", "filelock"):
    try:
        importlib.import_module(name)
        bare[name] = True
    except ImportError:
        bare[name] = False
for name in list(sys.modules):
    if name.split(".")[0] in bare:
        del sys.modules[name]
sys.path[:0] = [str(plugin), str(plugin / "vendor")]
failed, done = {}, []
for package in RUNTIME_PACKAGES:
    for path in sorted((plugin / package).rglob("*.py")) if (plugin / package).is_dir() else []:
        rel = path.relative_to(plugin).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        try:
            importlib.import_module(name)
            done.append(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
for name in ("plexapi.server", "persistqueue", "tenacity", "filelock", "requests", "stashapi.stashapp"):
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
where = {n: sys.modules[n].__file__ or list(sys.modules[n].__path__)[0] for n in ("plexapi", "persistqueue", "tenacity", "filelock",
                                              "requests", "stashapi") if n in sys.modules}
print(json.dumps({"bare": bare, "failed": failed, "done": done, "where": where}))
'''.replace("RUNTIME_PACKAGES", repr(rb.PACKAGES))


def run_tool(python: str, script: str, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STASH2PLEX_DATA_DIR")}
    done = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def schema_version_of(tree: Path) -> int:
    done = subprocess.run([sys.executable, "-c", "import sync_queue.schema as s; print(s.SCHEMA_VERSION)"],
                          cwd=tree, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    return int(done.stdout.strip()) if done.returncode == 0 else -1


def export_commit(commit: str, dest: Path) -> Path:
    return rb.export_ref(commit, dest)


def older_schema_tree(workdir: Path) -> tuple[str, Path] | None:
    """The newest commit whose state schema is older than the working tree's, exported."""
    log = subprocess.run(["git", "-C", str(ROOT), "log", "--format=%H", "--", "sync_queue/schema.py"],
                         capture_output=True, text=True, check=True).stdout.split()
    for commit in log:
        tree = export_commit(commit, workdir / commit[:12])
        if 0 < schema_version_of(tree) < SCHEMA_VERSION:
            return commit, tree
    return None


def host_for(plugin_dir: Path, stash_dir: Path, python: str = sys.executable) -> StashHost:
    def audit(result: RunResult) -> None:
        AUDIT.record(f"installed plugin run (rc={result.returncode})", result.stdout + result.stderr)

    env = {"STASH2PLEX_DATA_DIR": ""}  # the data dir must come from Stash's config dir
    return StashHost(plugin_dir=plugin_dir, connection={"Scheme": "http", "Host": "127.0.0.1", "Port": DEAD_PORT},
                     stash_dir=stash_dir, python=python, env=env, on_result=audit)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("releases")
    older = older_schema_tree(work / "trees")
    if older is None:
        pytest.skip("no commit has an older state schema than the working tree: no migration to cross")
    commit, tree = older
    quiet = lambda _m: None  # noqa: E731
    n = rb.build(work / "n", root=tree, version="0.1.0", date=DATE_N, vendor_cache=VENDOR_CACHE, log=quiet)
    n1 = rb.build(work / "n1", version="0.1.1", date=DATE_N1, vendor_cache=VENDOR_CACHE, log=quiet)
    return {"commit": commit, "old_schema": schema_version_of(tree), "n": n, "n1": n1}


def test_upgrade_keeps_queue_dlq_and_ledger_and_migrates_in_place(releases: dict[str, Any], tmp_path: Path) -> None:
    store = stash_pkg.PluginStore(tmp_path / "plugins")
    stash_dir = tmp_path / "stash-config"
    data = stash_dir / "plugin_data" / PLUGIN_ID
    folder = store.package_dir(PLUGIN_ID)

    store.install(stash_pkg.Source(releases["n"].index_path), PLUGIN_ID)
    seeded = run_tool(sys.executable, STATE_TOOL, str(folder), str(data), "seed")
    assert seeded["code"].startswith(str(folder))
    assert seeded["schema"] == releases["old_schema"] < SCHEMA_VERSION
    assert (seeded["due"], seeded["dlq"], seeded["ledger"]) == (2, 1, 2)
    new_source = stash_pkg.Source(releases["n1"].index_path)
    assert store.upgradable(new_source, PLUGIN_ID)
    store.install(new_source, PLUGIN_ID)
    assert store.manifest(PLUGIN_ID)["version"] == "0.1.1"
    assert "version: 0.1.1" in (folder / "Stash2Plex.yml").read_text()

    after = run_tool(sys.executable, STATE_TOOL, str(folder), str(data), "take")
    assert after["code"].startswith(str(folder))
    assert after["schema"] == SCHEMA_VERSION
    assert after["dead"] == seeded["dead"] == [[1, "PlexNotFound", "not in Plex"]]
    assert after["ledger_rows"] == seeded["ledger_rows"]
    assert [row[0] for row in after["ledger_rows"]] == [10, 11]
    assert after["taken"] == [2, 3]  # the pending jobs survived and run on the new schema
    # Any run of N+1 writes the notes (this task cannot reach Stash; the notes come first).
    host_for(folder, stash_dir).run_task("queue_status")
    assert (folder / "DATA_LOCATION.txt").is_file() and (data / "README.txt").is_file()
    assert stash_pkg.MANIFEST_FILE in {p.name for p in folder.iterdir()}


def test_uninstall_leaves_data_and_a_note_naming_it(releases: dict[str, Any], tmp_path: Path) -> None:
    store = stash_pkg.PluginStore(tmp_path / "plugins")
    stash_dir = tmp_path / "stash-config"
    data = stash_dir / "plugin_data" / PLUGIN_ID
    folder = store.package_dir(PLUGIN_ID)
    store.install(stash_pkg.Source(releases["n1"].index_path), PLUGIN_ID)
    run_tool(sys.executable, STATE_TOOL, str(folder), str(data), "seed")
    host_for(folder, stash_dir).run_task("queue_status")

    store.uninstall(PLUGIN_ID)
    assert store.installed() == []
    left = [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert left == [folder / "DATA_LOCATION.txt"]
    note = (folder / "DATA_LOCATION.txt").read_text()
    assert str(data) in note and "delete" in note
    assert (data / "stash2plex.db").is_file()
    assert str(data) in (data / "README.txt").read_text()
    # Reinstalling finds the same state.
    store.install(stash_pkg.Source(releases["n1"].index_path), PLUGIN_ID)
    again = run_tool(sys.executable, STATE_TOOL, str(folder), str(data), "inspect")
    assert (again["due"], again["dlq"], again["ledger"]) == (2, 1, 2)


# --- the official Docker image's situation ------------------------------------------------------


@pytest.fixture(scope="module")
def image_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh venv holding only what Stash's image has: requests and stashapp-tools."""
    venv = tmp_path_factory.mktemp("image") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    done = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "requests", "stashapp-tools"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return python


@pytest.fixture(scope="module")
def installed_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rb.Release]:
    work = tmp_path_factory.mktemp("image-release")
    release = rb.build(work / "dist", date=DATE_N1, vendor_cache=VENDOR_CACHE, log=lambda _m: None)
    store = stash_pkg.PluginStore(work / "plugins")
    store.install(stash_pkg.Source(release.index_path), PLUGIN_ID)
    return store.package_dir(PLUGIN_ID), release


@pytest.mark.slow
def test_every_runtime_module_imports_in_the_image_python_with_vendor(
        image_python: str, installed_release: tuple[Path, rb.Release]) -> None:
    folder, _release = installed_release
    report = run_tool(image_python, IMPORT_TOOL, str(folder))
    assert report["bare"] == {"plexapi": False, "persistqueue": False, "tenacity": False, "filelock": False}
    assert report["failed"] == {}
    assert {"base.deps", "sync_queue.jobs", "worker.launch", "plex.pathmap"} <= set(report["done"])
    for name in ("plexapi", "persistqueue", "tenacity", "filelock"):
        assert report["where"][name].startswith(str(folder / "vendor")), name
    for name in ("requests", "stashapi"):
        assert not report["where"][name].startswith(str(folder)), name  # the image's own copy


@pytest.mark.slow
def test_hook_records_and_starts_a_worker_in_the_image_python(
        image_python: str, installed_release: tuple[Path, rb.Release], tmp_path: Path) -> None:
    folder, _release = installed_release
    stash_dir = tmp_path / "stash-config"
    host = host_for(folder, stash_dir, python=image_python)
    (result,) = host.run_hook("Scene.Update.Post", 42, hook_input={"id": "42", "title": "x"})
    assert result.error is None, result.logs
    assert result.output == {"recorded": {"trigger": "Scene.Update.Post", "id": 42}, "worker_started": True}
    assert not [msg for level, msg in result.logs if level == "error"]
    db = stash_dir / "plugin_data" / PLUGIN_ID / "stash2plex.db"
    with sqlite3.connect(str(db), timeout=30) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        seen = 0
        for table, column in (("inbox", "entity_id"), ("schedule", "scene_id"), ("dlq", "scene_id"),
                              ("ledger", "scene_id")):
            if table in tables:
                seen += conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = 42").fetchone()[0]
    assert seen >= 1  # in the inbox, or already taken up by the worker


@pytest.mark.slow
def test_missing_dependency_in_the_image_python_is_one_line_with_the_command(
        image_python: str, installed_release: tuple[Path, rb.Release], tmp_path: Path) -> None:
    """Without vendor/ (a git checkout copied in by hand) a task says exactly what to run."""
    folder, _release = installed_release
    bare = tmp_path / "plugins" / PLUGIN_ID
    bare.parent.mkdir(parents=True)
    with zipfile.ZipFile(_release.zip_path) as archive:
        for name in archive.namelist():
            if not name.startswith("vendor/"):
                archive.extract(name, bare)
    command = f'"{image_python}" -m pip install --target "{bare / "vendor"}"'
    # The real ModuleNotFoundError of the bare interpreter, turned into the line.
    probe = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1])\n"
        "from base.deps import missing_dependency\n"
        "try:\n    import plexapi.server\nexcept ModuleNotFoundError as exc:\n"
        "    print(json.dumps({'line': str(missing_dependency(exc, Path(sys.argv[1])))}))\n"
    )
    line = run_tool(image_python, probe, str(bare))["line"]
    assert command in line and "'plexapi', 'persist-queue', 'tenacity', 'filelock'" in line
    assert "\n" not in line
    # The installed command really works, without git or root, in that interpreter.
    fix = line.split("with: ", 1)[1]
    done = subprocess.run(fix, shell=True, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = run_tool(image_python, IMPORT_TOOL, str(bare))
    assert report["failed"] == {}
    assert report["where"]["plexapi"].startswith(str(bare / "vendor"))

    result = host_for(bare, tmp_path / "stash-config", python=image_python).run_task("queue_status")
    errors = [msg for level, msg in result.logs if level == "error"]
    assert not [e for e in errors if "needs the Python package" in e], errors


@pytest.mark.slow
def test_hook_and_task_sync_everything_from_the_image_python(
        image_python: str, installed_release: tuple[Path, rb.Release], tmp_path: Path) -> None:
    """The full promise: installed from the zip, run by the image's Python, scenes reach Plex."""
    from emulators import plex_server, stash_library, stash_server

    folder, _release = installed_release
    library = stash_library.generate_library(5, seed=3)
    with stash_server.StashEmulator(library) as stash, plex_server.PlexEmulator() as plex:
        for scene in library.scenes.values():
            plex.add_item(scene.files[0].path.replace("/data/stash", "/media/stash", 1))
        stash.set_plugin_settings(PLUGIN_ID, {"plex_url": plex.url, "plex_token": plex.token,
                                              "path_map": "/data/stash=>/media/stash"})
        conn = stash.connection()
        host = StashHost(plugin_dir=folder, connection=conn, stash_dir=tmp_path / "stash-config",
                         cookie_factory=stash.session_cookie, python=image_python,
                         env={"STASH2PLEX_DATA_DIR": ""},
                         on_result=lambda r: AUDIT.record("image e2e run", r.stdout + r.stderr))
        first = next(iter(library.scenes))
        (hooked,) = host.run_hook("Scene.Update.Post", first)
        assert hooked.error is None, hooked.logs
        result = host.run_task("all")
        assert result.error is None, result.logs
        titled = [s for s in library.scenes.values() if s.title]
        assert titled
        for scene in titled:
            item = plex.item_by_file(scene.files[0].path.replace("/data/stash", "/media/stash", 1))
            assert item is not None and item.title == scene.title, scene
