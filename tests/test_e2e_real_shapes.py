"""Issue 15 end to end: a library that meets every real-Plex shape at once, run as Stash runs
the plugin. Plex leaves out sort titles equal to the title and holds file names in NFD,
one item carries a `Plex Versions/` copy that Stash keeps as a scene of its own, and a
person locked fields in Plex. After one Sync All, a second Sync All and a Reconcile send
nothing to Plex; the duplicate is dead-lettered naming both scenes; the locked fields are
kept and reported by Queue Status and Dry Run.
"""

from __future__ import annotations

import posixpath
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from emulators.stage import Stage, plex_path, stage
from tests.e2e_worker_support import QUIET, audited, counts, queue_of, writes
from tests.secret_audit import AUDIT


def ok(result: Any) -> dict[str, Any]:
    assert result.error is None and result.returncode == 0, (result.error, result.stderr[-3000:])
    assert isinstance(result.output, dict), result.stdout
    return result.output


def titled(st: Stage) -> list[int]:
    lib = st.library
    return [s for s in lib.sorted_ids() if lib.scenes[s].title and len(lib.scenes[s].files) == 1]


def add_optimised_pair(st: Stage, copy_first: bool) -> tuple[int, int]:
    """A new movie folder with its file (the owner) and Plex's optimised copy of it, each a
    Stash scene; with `copy_first` the copy has the lower scene id. (owner, copy)."""
    folder = "/data/stash/Film Première (2020)"
    original = f"{folder}/Film Première (2020).mkv"
    copy = f"{folder}/Plex Versions/Optimized for TV/Film Première (2020).mp4"
    lib = st.library
    first, second = (copy, original) if copy_first else (original, copy)
    ids = {path: lib.add_scene(files=[path], title=f"From {posixpath.basename(posixpath.dirname(path))}",
                               details="Stash text") for path in (first, second)}
    key = st.plex.add_item(plex_path(original))
    assert st.plex.add_item(plex_path(copy)) == key  # the copy is a second Media, not an item
    return ids[original], ids[copy]


def sync_all(st: Stage) -> dict[str, Any]:
    AUDIT.add_secret(st.plex.token)
    return ok(st.task("all"))


def stage_with_every_shape(tmp_path: Path, **settings: Any):
    return stage(10, seed=151, work_dir=tmp_path, settings={**QUIET, **settings},
                 on_result=audited("real shapes e2e"))


@pytest.mark.parametrize("copy_first", [False, True])
def test_after_one_sync_all_another_and_a_reconcile_write_nothing(tmp_path: Path, copy_first: bool) -> None:
    with stage_with_every_shape(tmp_path) as st:
        owner, copy = add_optimised_pair(st, copy_first)
        locked = titled(st)[0]
        locked_key = st.plex_item(locked).rating_key
        st.plex.user_edit(locked_key, locks=["title"])  # a person's lock before we ever synced
        nfd = [p for p in (m.file for i in st.plex.library.items.values() for m in i.media)
               if unicodedata.normalize("NFC", p) != p]
        assert nfd, "the library must hold names that differ between NFC and NFD"

        first = sync_all(st)
        summary = first["summary"]
        assert summary["dead_lettered"] == {"duplicate": [copy]}, summary
        assert summary["synced"] == len(st.library.scenes) - 1
        item = st.plex.item_by_file(plex_path(st.library.scenes[owner].files[0].path))
        assert item.title == st.library.scenes[owner].title  # the owner's metadata, never the copy's
        with queue_of(st) as queue:
            (letter,) = queue.dlq_list("duplicate")
            assert letter.scene_id == copy
            assert f"Scene {copy}" in letter.message and f"scene {owner}" in letter.message
            assert "primary part" in letter.message
            assert queue.ledger_get(copy) is None or queue.ledger_get(copy).lost
        assert st.plex_item(locked).title != st.library.scenes[locked].title  # the person's lock held
        assert st.plex.count("PUT", rating_key=item.rating_key) == 1  # written once, by its owner

        st.plex.reset_log()
        again = sync_all(st)
        assert again["summary"]["synced"] == 0 and writes(st) == 0, again["summary"]

        reconcile = ok(st.task("reconcile_all"))
        assert reconcile["queued"] == 0 and writes(st) == 0, reconcile
        assert reconcile["gaps"]["drifted"] == 0 and reconcile["gaps"]["empty"] == 0
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq) == (0, 0, 0, 1)

        status = ok(st.task("queue_status"))
        assert status["kept_locked"] == {"scenes": 1, "entries": [{"scene_id": locked,
                                                                    "fields": ["title", "titleSort"]}]}
        assert any(f"scene {locked}: title, titleSort" in line for line in st.task("queue_status").lines("info"))

        dry = ok(st.task("dry_run"))
        assert dry["counts"].get("kept, locked in Plex") == 1 and dry["written"] == 0
        shown = {d["scene_id"]: d for d in dry["scenes_changed"]}
        assert shown[locked]["kept_locked"] == ["title", "titleSort"]
        assert shown[copy]["status"] == "duplicate" and f"scene {owner}" in shown[copy]["message"]
        assert writes(st) == 0


def test_with_locking_off_a_plex_web_edit_is_kept_and_nothing_repeats(tmp_path: Path) -> None:
    with stage_with_every_shape(tmp_path, lock_synced_fields=False, preserve_plex_edits=True) as st:
        sync_all(st)
        edited = titled(st)[1]
        key = st.plex_item(edited).rating_key
        st.plex.user_edit(key, summary="Written by a person in Plex Web")
        st.library.update_scene(edited, details="Changed in Stash afterwards")
        st.plex.reset_log()

        out = sync_all(st)
        assert out["summary"]["synced"] == 0 and out["summary"]["unchanged"] == 1, out["summary"]
        assert st.plex.item(key).fields["summary"] == "Written by a person in Plex Web"
        assert st.plex.item(key).is_locked("summary")
        for record in st.plex.requests:  # no lock of theirs was ever released
            assert record.query.get("summary.locked") != "0"
        with queue_of(st) as queue:
            assert queue.ledger_user_locked(10) == (1, [(edited, ["summary"])])

        st.plex.reset_log()
        assert sync_all(st)["summary"]["synced"] == 0
        reconcile = ok(st.task("reconcile_all"))
        assert reconcile["queued"] == 0 and writes(st) == 0, reconcile


def test_the_owner_arriving_later_takes_the_item_over_and_the_copy_is_dead_lettered(tmp_path: Path) -> None:
    with stage_with_every_shape(tmp_path) as st:
        folder = "/data/stash/Später (2021)"
        original, copy = f"{folder}/Später (2021).mkv", f"{folder}/Plex Versions/Optimized for Mobile/Später (2021).mp4"
        copy_id = st.library.add_scene(files=[copy], title="Scanned copy", details="From the copy")
        key = st.plex.add_item(plex_path(original))
        st.plex.add_item(plex_path(copy))
        first = sync_all(st)
        assert first["summary"]["dead_lettered"] == {} and st.plex.item(key).title == "Scanned copy"

        owner = st.library.add_scene(files=[original], title="The film itself", details="From Stash")
        st.plex.reset_log()
        result = st.task("all")
        out = ok(result)
        assert out["summary"]["synced"] == 1 and out["summary"]["dead_lettered"] == {"duplicate": [copy_id]}
        assert st.plex.item(key).title == "The film itself"
        assert st.plex.count("PUT", rating_key=key) == 1  # the copy wrote nothing after the takeover
        assert any(f"scene {owner} now owns Plex item {key}" in line for line in result.lines("warning"))
        with queue_of(st) as queue:
            (letter,) = queue.dlq_list("duplicate")
            assert f"Scene {copy_id}" in letter.message and f"scene {owner}" in letter.message
            assert queue.ledger_get(copy_id).lost and queue.ledger_holder(str(key), copy_id).scene_id == owner

        st.plex.reset_log()
        assert sync_all(st)["summary"]["synced"] == 0
        reconcile = ok(st.task("reconcile_all"))
        assert reconcile["queued"] == 0 and writes(st) == 0, reconcile
