"""Collections' request cost: a first Sync All of scenes in Stash groups, through the host.

    .venv/bin/python bench/bench_collections.py [--scenes 2000] [--groups 200] [--in-order] [--dates-against]

The library is generated, then half its scenes are spread over `groups` groups, each with a
synopsis and a front image (the most a group's collection can need), numbered against their
scene ids (every item out of its id order) or, with `--in-order`, with them.

Realistic by default: a group is a series or a release, and its scenes are numbered in the
order they came out, so each one's date is a week after the one before (every scene dated).
Plex's default collection order (release date) then already is scene order. With
`--dates-against` the dates run against the numbers (the last scene came out first): the
case that needs Plex's custom order and moves.

The plugin runs as Stash runs it; the table counts the emulated Plex's requests by kind, per
group where that is the unit, then the requests of a second Sync All of the unchanged library.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import Figure, emit
from emulators.stage import stage
from emulators.stash_library import StashLibrary, generate_library, png_bytes

SETTINGS = {"sync_poster": False, "sync_background": False, "trigger_plex_scan": False, "max_tags": 0}


#: How a group's scene dates relate to its scene numbers (None: as generated, at random).
DATES_FOLLOW, DATES_AGAINST = "follow", "against"
FIRST_RELEASE = date(2015, 1, 5)


def group_library(n: int, groups: int, seed: int = 5, in_order: bool = False,
                  dates: str | None = None) -> StashLibrary:
    """`n` generated scenes, the first half spread over `groups` groups with synopses and
    front images, numbered against their ids (or with them, `in_order`); with `dates`, each
    group's scenes dated a week apart in the order of their numbers (`DATES_FOLLOW`) or in
    the reverse order (`DATES_AGAINST`)."""
    lib = generate_library(n, seed=seed, stash_root="/data/stash")
    for scene in lib.scenes.values():
        scene.groups = []
    lib.groups.clear()
    per = max(1, (n // 2) // groups)
    ids = lib.sorted_ids()
    for g in range(1, groups + 1):
        gid = lib.add_group(f"Series {g}", synopsis=f"The story of series {g}.", front_image=png_bytes(1000 + g))
        members = ids[(g - 1) * per: g * per]
        for index, sid in enumerate(members if in_order else list(reversed(members)), start=1):
            lib.scenes[sid].groups = [(gid, index)]
            if dates is not None:
                week = index if dates == DATES_FOLLOW else per + 1 - index
                lib.scenes[sid].date = (FIRST_RELEASE + timedelta(days=30 * g + 7 * week)).isoformat()
    lib.revision += 1
    return lib


def kind_of(record: Any) -> str:
    """What one Plex request was, in the words of `plex.collections`' budget."""
    path, query = record.path, record.query
    if path.endswith("/all") and query.get("type") == "18":
        return "collection edit" if record.method == "PUT" else "collections listing"
    if path.endswith("/all") and record.method == "PUT":
        return "scene edit"
    for part, name in (("/children", "order read"), ("/move", "move"), ("/prefs", "sort"),
                       ("/posters", "poster upload")):
        if part in path:
            return name
    return "delete" if record.method == "DELETE" else f"other {record.method}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--in-order", action="store_true")
    parser.add_argument("--dates-against", action="store_true")
    args = parser.parse_args(argv)
    dates = DATES_AGAINST if args.dates_against else DATES_FOLLOW
    lib = group_library(args.scenes, args.groups, in_order=args.in_order, dates=dates)
    with stage(library=lib, work_dir=Path(tempfile.mkdtemp(prefix="s2p-bench-")), settings=SETTINGS) as st:
        st.plex.reset_log()
        assert st.task("all").error is None
        with st.plex.lock:
            counts = Counter(kind_of(r) for r in st.plex.requests)
        st.plex.reset_log()
        assert st.task("all").error is None
        again = len(st.plex.requests)
    groups = len(lib.groups)
    order = (f"numbered {'with' if args.in_order else 'against'} their ids, dates "
             f"{'against' if args.dates_against else 'following'} their numbers")
    print(f"First Sync All, {args.scenes} scenes, {groups} groups ({order}): Plex requests")
    print("| request | count | per group |\n|---|---|---|")
    for kind, n in sorted(counts.items()):
        print(f"| {kind} | {n} | {n / groups:.2f} |")
    print(f"Second Sync All of the unchanged library: {again} Plex requests")
    besides = {k: n for k, n in sorted(counts.items()) if k != "scene edit" and not k.startswith("other")}
    emit(Figure(f"collections, first Sync All of {args.scenes:,} scenes, {groups} groups with synopses and "
                f"front images ({order}), besides the {counts['scene edit']:,} scene edits and their item reads",
                "per group: " + ", ".join(f"{n / groups:.2f} {k}" for k, n in besides.items())
                + f"; a second Sync All: {again} Plex requests"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
