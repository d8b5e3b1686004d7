"""reconciliation.fanout: which scenes a performer/studio/tag event affects, and expanding it
into jobs resumably. Pure tables first; then the real queue and the real Stash client over
loopback HTTP against the Stash emulator (a crash is a Stash failure in the middle)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from base.errors import StashUnavailable
from base.protocol import StashLog
from base.settings import load_settings
from emulators.stash_library import StashLibrary
from emulators.stash_server import StashEmulator
from plugin.dispatch import HOOKS
from plugin.hooks import hook_payload, merged_sources
from reconciliation.fanout import (
    LEDGER,
    STASH,
    Lookup,
    action,
    expand,
    job_reason,
    plan_lookup,
    remaining,
    scene_filter,
    scene_refs,
    state_function,
)
from stash.client import StashClient
from stash.records import Performer, Scene, Studio
from sync_queue.fanout import FANOUT_CURSOR, FanOutEvent, merge_fanout_payload
from sync_queue.inbox import record_event
from sync_queue.jobs import JobQueue
from sync_queue.ledger import LEDGER_REFS
from sync_queue.state import StateStore
from worker.core import Services, ingest
from worker.policy import RetryPolicy

T0 = 1_700_000_000.0

#: Every trigger Stash fires (shared reference §1.6, pkg/plugin/hook/hooks.go).
STASH_TRIGGERS = {f"{t}.{a}.Post" for t in ("Scene", "SceneMarker", "Image", "Gallery", "GalleryChapter",
                                            "Group", "Movie", "Performer", "Studio", "Tag")
                  for a in ("Create", "Update", "Destroy")} | {"Tag.Merge.Post"}


# --- the hook side ---------------------------------------------------------------------------


def test_every_declared_hook_is_one_stash_fires() -> None:
    assert set(HOOKS) <= STASH_TRIGGERS
    assert {"Performer", "Studio", "Tag", "Group", "Movie"} == {t.split(".")[0] for t, k in HOOKS.items() if k != "scene"
                                               and k != "scene_destroyed"}
    assert HOOKS["Scene.Destroy.Post"] == "scene_destroyed"
    assert all(f"{e}.{a}.Post" in HOOKS for e in ("Performer", "Studio", "Tag") for a in ("Update", "Destroy"))


@pytest.mark.parametrize(("context", "sources", "payload"), [
    ({"type": "Tag.Merge.Post", "id": 5, "input": {"source": ["3", "4"], "destination": "5"}}, [3, 4],
     {"merged": [3, 4]}),
    ({"type": "Tag.Merge.Post", "id": 5, "input": {"source": [4, "4", 5, "x", -1, None], "destination": 5}}, [4],
     {"merged": [4]}),
    ({"type": "Tag.Merge.Post", "id": 5, "input": None}, [], None),
    ({"type": "Tag.Merge.Post", "id": 5, "input": {"source": "3"}}, [], None),
    ({"type": "Tag.Update.Post", "id": 5, "input": {"source": ["3"]}}, [3], None),
    ({"type": "Performer.Destroy.Post", "id": 5, "input": {"id": "5"}}, [], None),
])
def test_a_merge_hook_records_the_tags_it_merged_away(context: dict[str, Any], sources: list[int],
                                                      payload: dict[str, Any] | None) -> None:
    assert merged_sources(context) == sources
    assert hook_payload(context) == payload


# --- pure decisions --------------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "expected"), [
    ("Tag.Merge.Post", "Merge"), ("Performer.Update.Post", "Update"), ("Studio.Destroy.Post", "Destroy"),
    ("sync_all", ""), ("Tag.Merge", ""), ("", ""),
])
def test_action(reason: str, expected: str) -> None:
    assert action(reason) == expected


@pytest.mark.parametrize(("reasons", "payload", "lookup"), [
    (("Tag.Update.Post",), None, Lookup(True, ())),
    (("Tag.Destroy.Post",), None, Lookup(False, (7,))),
    (("Tag.Merge.Post",), {"merged": [3, 2]}, Lookup(True, (2, 3))),
    (("Tag.Merge.Post",), None, Lookup(True, ())),
    (("Tag.Update.Post", "Tag.Destroy.Post"), None, Lookup(True, (7,))),
    (("Tag.Merge.Post", "Tag.Destroy.Post"), {"merged": [3]}, Lookup(True, (3, 7))),
    (("Something.Else",), None, Lookup(True, ())),
    ((), None, Lookup(True, ())),
])
def test_plan_lookup(reasons: tuple[str, ...], payload: dict[str, Any] | None, lookup: Lookup) -> None:
    assert plan_lookup(7, reasons, payload) == lookup


@pytest.mark.parametrize(("lookup", "cursor", "expected"), [
    (Lookup(True, (1,)), None, [(STASH, 0), (LEDGER, 0)]),
    (Lookup(True, (1,)), {"phase": STASH, "after": 40}, [(STASH, 40), (LEDGER, 0)]),
    (Lookup(True, (1,)), {"phase": LEDGER, "after": 9}, [(LEDGER, 9)]),
    (Lookup(True, ()), {"phase": LEDGER, "after": 9}, [(STASH, 0)]),  # foreign cursor: start over
    (Lookup(False, (1,)), {"phase": STASH, "after": 9}, [(LEDGER, 0)]),
    (Lookup(False, ()), None, []),
])
def test_remaining_resumes_after_the_cursor(lookup: Lookup, cursor: dict[str, Any] | None,
                                            expected: list[tuple[str, int]]) -> None:
    assert remaining(lookup, cursor) == expected


def test_scene_filters_use_the_schema_criteria() -> None:
    assert scene_filter("performer", 4) == {"performers": {"value": ["4"], "modifier": "INCLUDES"}}
    assert scene_filter("studio", 4) == {"studios": {"value": ["4"], "modifier": "INCLUDES", "depth": 0}}
    assert scene_filter("tag", 4) == {"tags": {"value": ["4"], "modifier": "INCLUDES", "depth": 0}}


def test_scene_refs_are_the_ids_a_sync_shows() -> None:
    scene = Scene(id=1, studio=Studio("9", "S"), performers=(Performer("3", "A"), Performer("2", "B")),
                  tags=("x", "y", "z"), tag_ids=("30", "10", "10"))
    assert scene_refs(scene) == {"performer": [2, 3], "studio": [9], "tag": [10, 30]}
    assert scene_refs(Scene(id=2)) == {"performer": [], "studio": [], "tag": []}


@pytest.mark.parametrize(("stored", "new", "merged"), [
    (None, None, None),
    (None, {"merged": [3]}, {"merged": [3]}),
    ({"merged": [3]}, {"merged": [4, 3]}, {"merged": [3, 4]}),
    ({"merged": [3]}, None, {"merged": [3]}),
    ({"merged": [3], FANOUT_CURSOR: {"phase": "stash", "after": 9}}, None, {"merged": [3]}),
    ({FANOUT_CURSOR: {"phase": "stash", "after": 9}}, None, None),
])
def test_a_second_event_keeps_every_merged_tag_and_restarts_the_pass(stored: Any, new: Any, merged: Any) -> None:
    text = merge_fanout_payload(stored, new)
    assert (json.loads(text) if text else None) == merged


def test_job_reason_names_the_trigger_and_entity() -> None:
    event = FanOutEvent(1, "tag", 12, ("Tag.Update.Post", "Tag.Merge.Post"), None, T0)
    assert job_reason(event) == "Tag.Update.Post+Tag.Merge.Post tag 12"


# --- expansion against the real queue and Stash -----------------------------------------------


def tagged_library(n: int, tag: int = 1) -> StashLibrary:
    lib = StashLibrary()
    from emulators.stash_library import Tag

    lib.tags[tag] = Tag(id=tag, name="Shared")
    lib.tags[2] = Tag(id=2, name="Other")
    for i in range(1, n + 1):
        lib.add_scene(files=[f"/data/stash/{i}.mp4"], title=f"S{i}", tag_ids=[tag] if i % 3 else [2], now=T0)
    return lib


@pytest.fixture
def stash() -> Iterator[StashEmulator]:
    with StashEmulator(tagged_library(300)) as emulator:
        yield emulator


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    q = JobQueue(tmp_path)
    yield q
    q.close()


class Recording:
    """The real client, noting where each listing started and breaking after `fail_after` scenes."""

    def __init__(self, client: StashClient, emulator: StashEmulator, fail_after: int | None = None) -> None:
        self.client, self.emulator, self.fail_after = client, emulator, fail_after
        self.starts: list[int] = []
        self.seen = 0

    def iter_scenes(self, scene_filter: dict[str, Any] | None = None, after_id: int = 0,
                    page_size: int = 200) -> Iterator[Scene]:
        self.starts.append(after_id)
        for scene in self.client.iter_scenes(scene_filter, after_id=after_id, page_size=page_size):
            self.seen += 1
            if self.fail_after is not None and self.seen == self.fail_after:
                self.emulator.faults.http_500_next(1)  # the next page request fails
            yield scene


def client_for(emulator: StashEmulator) -> StashClient:
    return StashClient(emulator.connection(), StashLog(stream=io.StringIO()))


def stored(queue: JobQueue, tmp_path: Path, kind: str, entity: int, reason: str,
           payload: dict[str, Any] | None = None) -> FanOutEvent:
    record_event(tmp_path, kind, entity, reason, T0, payload)
    (event,) = queue.ingest(T0).fanout
    return event


def live_scenes(queue: JobQueue, ids: range) -> set[int]:
    return {i for i in ids if queue.report.job_for_scene(i) is not None}


def test_an_update_queues_exactly_the_scenes_stash_relates_and_resumes_after_a_failure(
        stash: StashEmulator, queue: JobQueue, tmp_path: Path) -> None:
    expected = {i for i in range(1, 301) if i % 3}
    event = stored(queue, tmp_path, "tag", 1, "Tag.Update.Post")
    lister = Recording(client_for(stash), stash, fail_after=100)
    with pytest.raises(StashUnavailable):
        expand(event, queue, lister, None, T0, page=50)
    # Two pages made it; the event is still stored, with the cursor after the last of them.
    (kept,) = queue.fanout.pending()
    cursor = kept.payload[FANOUT_CURSOR]
    assert cursor["phase"] == STASH and len({i for i in expected if i <= cursor["after"]}) == 100
    assert live_scenes(queue, range(1, 301)) == {i for i in expected if i <= cursor["after"]}

    lister.fail_after = None
    result = expand(kept, queue, lister, None, T0, page=50)
    assert lister.starts == [0, cursor["after"]]  # resumed, not restarted
    assert live_scenes(queue, range(1, 301)) == expected
    assert queue.report.counts(T0).due == len(expected) and queue.fanout.pending() == []
    assert result.scenes == len(expected) - 100 and result.events == 1


def test_the_ledger_rule_skips_scenes_whose_plex_state_did_not_change(
        stash: StashEmulator, queue: JobQueue, tmp_path: Path) -> None:
    settings = load_settings({"plex_url": "x", "plex_token": "t"}, warn=lambda m: None)
    state_of = state_function(settings)
    assert state_of is not None
    client = client_for(stash)
    scenes = list(client.iter_scenes({"tags": {"value": ["1"], "modifier": "INCLUDES", "depth": 0}}))
    for scene in scenes:  # as if synced just now, with the tag's current name
        queue.ledger.put(scene.id, state_of(scene), str(scene.id), None, None, {}, T0)
    renamed = {s.id for s in scenes if s.id % 2}
    for sid in renamed:  # a rename only some of them show (as if others hid tags in Plex)
        stash.library.scenes[sid].title = f"Changed {sid}"
    event = stored(queue, tmp_path, "tag", 1, "Tag.Update.Post")
    result = expand(event, queue, client, state_of, T0)
    assert live_scenes(queue, range(1, 301)) == renamed
    assert (result.scenes, result.queued) == (len(scenes), len(renamed))
    assert queue.report.counter("skipped_unchanged") == len(scenes) - len(renamed)


def test_a_destroy_finds_its_scenes_in_the_ledger_without_asking_stash(queue: JobQueue, tmp_path: Path) -> None:
    for sid in range(1, 2501):
        refs = {"tag": [7] if sid % 5 == 0 else [8], "performer": [], "studio": []}
        queue.ledger.put(sid, "h", str(sid), None, None, {LEDGER_REFS: refs}, T0)
    queue.ledger.put(9999, "h", "x", None, None, {"written": {}}, T0)  # synced before refs existed

    class NoStash:
        def iter_scenes(self, *args: Any, **kwargs: Any) -> Iterator[Scene]:
            raise AssertionError("a destroyed tag's scenes cannot come from Stash")

    event = stored(queue, tmp_path, "tag", 7, "Tag.Destroy.Post")
    result = expand(event, queue, NoStash(), None, T0, page=200)
    assert live_scenes(queue, range(1, 2501)) == set(range(5, 2501, 5))
    assert result.scenes == result.queued == 500 and queue.fanout.pending() == []
    assert queue.ledger.scenes_referencing("tag", [7, 8], after=2495, limit=10) == [2496, 2497, 2498, 2499, 2500]
    assert queue.ledger.scenes_referencing("performer", [7]) == []


def test_a_merge_queues_the_destination_scenes_and_the_ledger_scenes_of_merged_tags(
        stash: StashEmulator, queue: JobQueue, tmp_path: Path) -> None:
    # Scene 3 (tag 2) once showed tag 40, merged away into tag 1; Stash no longer knows 40.
    queue.ledger.put(3, "h", "3", None, None, {LEDGER_REFS: {"tag": [40]}}, T0)
    event = stored(queue, tmp_path, "tag", 1, "Tag.Merge.Post", {"merged": [40]})
    result = expand(event, queue, client_for(stash), None, T0)
    assert live_scenes(queue, range(1, 301)) == {i for i in range(1, 301) if i % 3} | {3}
    assert result.events == 1 and queue.fanout.pending() == []


def test_repeating_an_expansion_creates_no_second_job(stash: StashEmulator, queue: JobQueue, tmp_path: Path) -> None:
    client = client_for(stash)
    expand(stored(queue, tmp_path, "tag", 1, "Tag.Update.Post"), queue, client, None, T0)
    due = queue.report.counts(T0).due
    expand(stored(queue, tmp_path, "tag", 1, "Tag.Update.Post"), queue, client, None, T0 + 1)
    assert queue.report.counts(T0).due == due == 200


# --- the core's ingest step --------------------------------------------------------------------


def services(queue: JobQueue, tmp_path: Path, stash: Any) -> tuple[Services, io.StringIO]:
    stream = io.StringIO()
    settings = load_settings({"plex_url": "x", "plex_token": "t"}, warn=lambda m: None)
    svc = Services(queue, StateStore(tmp_path), stash, None, RetryPolicy.from_settings(settings),  # type: ignore[arg-type]
                   StashLog(stream=stream), settings=settings)
    return svc, stream


def test_ingest_expands_fanout_and_postpones_it_while_stash_is_down(
        stash: StashEmulator, queue: JobQueue, tmp_path: Path) -> None:
    svc, stream = services(queue, tmp_path, client_for(stash))
    record_event(tmp_path, "tag", 1, "Tag.Update.Post", T0)
    record_event(tmp_path, "scene", 3, "Scene.Update.Post", T0)
    stash.faults.http_500_next(1)
    result = ingest(svc, T0)
    assert result.created == 1 and queue.report.counts(T0).fanout == 1  # the scene event went through
    assert "not expanded yet" in stream.getvalue()
    assert svc.fanout_retry_at > T0
    assert ingest(svc, T0 + 1).created == 0 and queue.report.counts(T0).fanout == 1  # not retried at once
    later = svc.fanout_retry_at
    result = ingest(svc, later)
    assert result.created == 200 and queue.report.counts(later).fanout == 0
    assert queue.report.counts(later).due == 201
    svc.state.close()
