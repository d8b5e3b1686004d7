"""What the end-to-end worker tests share: opening the queue beside the plugin, counting Plex
requests per scene, and the independent check that a Plex item shows what Stash has.

The check does not call `plex.desired`: it restates, from the Stash library itself, the few
fields a sync must leave behind, so a bug in the plugin's own model cannot make it pass.
"""

from __future__ import annotations

import json
import posixpath
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from emulators.host import RunResult
from emulators.stage import Stage
from sync_queue.jobs import JobQueue
from sync_queue.state import BREAKER, StateStore
from tests.secret_audit import AUDIT
from worker.breaker import Breaker

#: The queue-shaped parts of the plugin's settings the tests keep fixed: no artwork (two
#: uploads per scene would only blur the write counts), no scan requests unless a test asks.
QUIET = {"sync_poster": False, "sync_background": False, "trigger_plex_scan": False}


def audited(what: str):
    return lambda result: AUDIT.record(what, result.stdout + result.stderr)


@contextmanager
def queue_of(st: Stage) -> Iterator[JobQueue]:
    """The plugin's queue, opened read-only beside it (never compacted from here)."""
    queue = JobQueue(st.data_dir)
    try:
        yield queue
    finally:
        queue.close(compact=False)


def counts(st: Stage):
    with queue_of(st) as queue:
        return queue.report.counts(time.time())


def inbox_ids(st: Stage) -> set[int]:
    """Scenes with a hook event recorded but not yet turned into a job."""
    from sync_queue.db import connect
    from sync_queue.inbox import read_inbox

    conn = connect(st.data_dir)
    try:
        return {e.entity_id for e in read_inbox(conn, 1_000_000)}
    finally:
        conn.close()


def stored_breaker(st: Stage) -> Breaker:
    """The circuit breaker as the plugin last stored it."""
    with StateStore(st.data_dir) as state:
        return Breaker.load(state.get(BREAKER))


def ledger_count(st: Stage) -> int:
    """Scenes recorded as synced; a plain read, cheap enough to poll."""
    from sync_queue.db import connect

    conn = connect(st.data_dir)
    try:
        return conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    finally:
        conn.close()


def lookups(st: Stage, scene_id: int) -> int:
    """Narrow look-ups (`/all?file=<name>`) Plex saw for the scene's first file, in either
    Unicode form; a name asked in its other form right after (the plugin does not know yet
    which form Plex holds) is the same look-up."""
    (path,) = st.scene_files([scene_id])
    name = unicodedata.normalize("NFC", posixpath.basename(path))
    with st.plex.lock:
        records = list(st.plex.requests)
    asked = [r.query["file"] for r in records if r.method == "GET" and r.path.endswith("/all") and "file" in r.query]
    same = [unicodedata.normalize("NFC", f) == name for f in asked]
    return sum(1 for i, hit in enumerate(same) if hit and not (i and same[i - 1] and asked[i - 1] != asked[i]))


def writes(st: Stage) -> int:
    """Requests that change something in Plex."""
    return st.plex.count("PUT") + st.plex.count("POST")


def item_edits(st: Stage) -> int:
    """Edits of items (scenes); a collection's own edit (type 18) goes to the same URL."""
    with st.plex.lock:
        records = list(st.plex.requests)
    return sum(1 for r in records if r.method == "PUT" and r.path.endswith("/all") and r.query.get("type") == "1")


def tag_names(item: Any, kind: str) -> list[str]:
    return [name for name, _thumb in item.tags.get(kind, [])]


def mismatches(st: Stage, scene_id: int) -> list[str]:
    """Where the scene's Plex item differs from Stash (title, studio, tags, performers,
    collections: its studio's and its groups', as the defaults have it), including a tag or
    collection listed twice. Empty means in sync."""
    lib = st.library
    scene = lib.scenes[scene_id]
    item = st.plex_item(scene_id)
    if item is None:
        return ["no Plex item"]
    problems = []
    if scene.title and item.title != scene.title:
        problems.append(f"title {item.title!r} != {scene.title!r}")
    studio = lib.studios[scene.studio_id].name if scene.studio_id else None
    if studio and item.fields.get("studio") != studio:
        problems.append(f"studio {item.fields.get('studio')!r} != {studio!r}")
    wanted = {
        "Genre": sorted(lib.tags[t].name for t in scene.tag_ids),
        "Role": sorted(lib.performers[p].name for p in scene.performer_ids),
        "Collection": ([studio] if studio else []) + [lib.groups[g].name for g, _ in scene.groups if g in lib.groups],
    }
    for kind, names in wanted.items():
        have = tag_names(item, kind)
        if len(have) != len(set(have)):
            problems.append(f"{kind} listed twice: {have}")
        if sorted(set(have)) != sorted(set(names)):
            problems.append(f"{kind} {sorted(have)} != {names}")
    return problems


def synced(st: Stage, scene_id: int) -> bool:
    return not mismatches(st, scene_id)


def worker_log(st: Stage) -> str:
    path = st.data_dir / "worker.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def summary_of(result: RunResult) -> dict[str, Any]:
    assert result.error is None, (result.error, result.stderr[-2000:])
    assert isinstance(result.output, dict), result.stdout
    return result.output["summary"]


def deferred_ids(summary: dict[str, Any]) -> set[int]:
    return {int(d["scene_id"]) for d in summary["deferred"]}


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process in clock ticks (/proc/<pid>/stat fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:3000]
