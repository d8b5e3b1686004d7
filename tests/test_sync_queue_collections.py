"""sync_queue.collections: the collections we own, the v6 migration, and the ledger's members."""

from __future__ import annotations

from pathlib import Path

from sync_queue.collections import MAX_ATTEMPTS
from sync_queue.jobs import JobQueue

T0 = 1_700_000_000.0
WANTED = {"summary": "About A", "image_url": "http://stash/group/1/frontimage?t=1", "ordered": True}


def test_migration_to_v6_adds_the_collections_table_and_keeps_the_ledger(tmp_path: Path) -> None:
    from sync_queue import schema
    from sync_queue.db import connect

    with JobQueue(tmp_path) as q:
        q.ledger.put(1, "h1", "77", None, None, {"plex_key": "77"}, T0)
    conn = connect(tmp_path)
    conn.executescript("DROP TABLE collections; UPDATE meta SET value = '5' WHERE key = 'schema_version';")
    assert schema.ensure_schema(conn) == schema.SCHEMA_VERSION >= 6
    conn.close()
    with JobQueue(tmp_path) as q:
        assert q.ledger.get(1).plex_key == "77"
        q.collections.claim("1", "group", "10", "Series A", WANTED, T0)
        assert [r.title for r in q.collections.due()] == ["Series A"]


def test_claim_touch_done_and_a_change_during_the_flush(tmp_path: Path) -> None:
    with JobQueue(tmp_path) as q:
        table = q.collections
        assert table.touch("1", "group", "10", T0) is False  # not ours: no row is made
        table.claim("1", "group", "10", "Series A", WANTED, T0)
        row = table.get("1", "group", "10")
        assert row.dirty and row.rating_key is None and row.wanted == WANTED
        table.done(row, "500", {"title": "Series A", "order": ["2", "1"]}, T0 + 1)
        row = table.get("1", "group", "10")
        assert not row.dirty and row.rating_key == "500" and row.written["order"] == ["2", "1"]
        assert table.due() == []

        table.touch("1", "group", "10", T0 + 2, title="Series B")
        taken = table.due()[0]
        table.touch("1", "group", "10", T0 + 3)  # changed again while the flush wrote it
        table.done(taken, "500", {"title": "Series B"}, T0 + 4)
        assert table.get("1", "group", "10").dirty

        assert table.touch_source("group", "10", T0 + 5, wanted={**WANTED, "summary": "New"}) == 1
        assert table.get("1", "group", "10").wanted["summary"] == "New"
        table.unwritten(table.get("1", "group", "10"), ["order"], T0 + 6)
        assert "order" not in table.get("1", "group", "10").written
        assert [r.title for r in table.by_title("1", ["series b"])] == ["Series B"]
        assert table.counts() == {"group": 1, "due": 1, "failed": 0}


def test_a_row_plex_refuses_stops_being_tried_until_it_changes(tmp_path: Path) -> None:
    with JobQueue(tmp_path) as q:
        table = q.collections
        table.claim("1", "group", "10", "Series A", WANTED, T0)
        for _ in range(MAX_ATTEMPTS):
            table.failed(table.get("1", "group", "10"), "BadRequest: 400")
        assert table.due() == [] and table.counts()["failed"] == 1
        assert table.get("1", "group", "10").last_error == "BadRequest: 400"
        table.touch("1", "group", "10", T0 + 1)
        assert len(table.due()) == 1


def test_members_of_collections_come_from_the_ledger_in_one_pass(tmp_path: Path) -> None:
    with JobQueue(tmp_path) as q:
        def put(sid: int, key: str, names: list[str], section: str = "1", lost: bool = False) -> None:
            q.ledger.put(sid, f"h{sid}", key, None, None, {
                "plex_key": key, "section_id": section, "written": {"collection": names},
                "group_index": {"10": sid * 10}}, T0)
            if lost:
                q.ledger.mark_lost(sid)

        put(1, "71", ["Series A", "Studio X"])
        put(2, "72", ["series a"])
        put(3, "73", ["Series A"], section="2")
        put(4, "74", ["Series A"], lost=True)
        members = q.ledger.collection_members("1", ["Series A", "Studio X", "Nobody"])
        assert [(m.scene_id, m.plex_key, m.group_index) for m in members["series a"]] == [
            (1, "71", {"10": 10}), (2, "72", {"10": 20})]
        assert [m.scene_id for m in members["studio x"]] == [1]
        assert members["nobody"] == []


def test_a_renamed_row_keeps_its_past_names(tmp_path: Path) -> None:
    with JobQueue(tmp_path) as q:
        table = q.collections
        table.claim("1", "studio", "3", "S3 r1", WANTED, T0)
        table.touch("1", "studio", "3", T0 + 1, title="S3 r2")
        table.touch("1", "studio", "3", T0 + 2, title="S3 R2")  # only the case: not a new name
        table.claim("1", "studio", "3", "S3 r3", WANTED, T0 + 3)
        table.touch("1", "studio", "3", T0 + 4, title="S3 r1")  # back to a past name
        row = table.get("1", "studio", "3")
        assert row.title == "S3 r1" and row.past == ("s3 r2", "s3 r3")
        assert [r.key for r in table.by_past_title("1", ["S3 R3"])] == [row.key]
        assert table.by_past_title("1", ["S3 r1"]) == [] and table.by_past_title("2", ["s3 r2"]) == []
        for n in range(20):
            table.touch("1", "studio", "3", T0 + 5 + n, title=f"name {n}")
        assert len(table.get("1", "studio", "3").past) == 8


def test_migration_to_v7_gives_every_row_no_past_names_and_keeps_it(tmp_path: Path) -> None:
    from sync_queue import schema
    from sync_queue.db import connect

    with JobQueue(tmp_path) as q:
        q.collections.claim("1", "studio", "3", "S3", WANTED, T0)
    conn = connect(tmp_path)
    conn.executescript("ALTER TABLE collections DROP COLUMN past; UPDATE meta SET value = '6' WHERE key = 'schema_version';")
    assert schema.ensure_schema(conn) == schema.SCHEMA_VERSION >= 7
    conn.close()
    with JobQueue(tmp_path) as q:
        row = q.collections.get("1", "studio", "3")
        assert row.title == "S3" and row.past == ()
        q.collections.touch("1", "studio", "3", T0 + 1, title="S3 renamed")
        assert q.collections.get("1", "studio", "3").past == ("s3",)
