"""The library generator at 1k / 10k / 100k scenes, and paged findScenes at the largest size.

    .venv/bin/python bench/bench_generator.py [--sizes 1000,10000,100000] [--seed N] [--repeat N]

Table 1, per size: wall seconds of `generate_library(n)` untraced; then the same
generation again under tracemalloc for its peak and retained (still referenced once it
returned) Python memory in MiB, with how long the traced run took (tracemalloc slows this
allocation-heavy code many times over, so its seconds are not the generator's speed).

Table 2, at the largest size: the emulated Stash serving that library on loopback, one
`StashInterface` built as a plugin builds it (three requests, half of them introspection),
then single findScenes round trips of 100 scenes through stashapi: with stashapi's own
generated `...Scene` fragment and with the plugin's `SCENE_FIELDS`, first and a deep page,
sorted by title and by updated_at (a sort of the whole library per page), an updated_at
filter (a text comparison per scene), and the plugin's keyset page (`id > N`) through
`stash.client`. Median of `--repeat` runs; KiB is the JSON answer's size.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from base.protocol import StashLog
from bench.figures import Figure, emit
from emulators.stash_library import StashLibrary, generate_library
from emulators.stash_server import StashEmulator
from stash import queries
from stash.client import StashClient

MIB = 1024 * 1024


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def measure_generation(n: int, seed: int) -> tuple[list[Any], StashLibrary]:
    gc.collect()
    start = time.perf_counter()
    library = generate_library(n, seed=seed)
    untraced = time.perf_counter() - start
    del library
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    library = generate_library(n, seed=seed)
    traced = time.perf_counter() - start
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    files = sum(len(s.files) for s in library.scenes.values())
    row = [f"{n:,}", f"{files:,}", f"{untraced:.2f}", f"{peak / MIB:.1f}", f"{retained / MIB:.1f}", f"{traced:.1f}"]
    return row, library


class _Silent:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def round_trips(library: StashLibrary, repeat: int) -> list[list[Any]]:
    from stashapi.stashapp import StashInterface

    rows: list[list[Any]] = []
    with StashEmulator(library) as stash:
        start = time.perf_counter()
        api = StashInterface(dict(stash.connection(), Logger=_Silent()))
        built = (time.perf_counter() - start) * 1000
        rows.append(["StashInterface(...) construction", "-", f"{built:.0f}", "-", "3 requests"])
        n = len(library.scenes)
        deep = max(1, n // 100 // 2)
        since = library.stamp(library.scenes[max(library.scenes) - 500].updated_at)

        def page(filter_: dict[str, Any], fragment: str | None = None, f: dict[str, Any] | None = None) -> Any:
            return api.find_scenes(f=dict(f or {}), filter=dict(filter_), fragment=fragment, get_count=True)

        cases: list[tuple[str, Callable[[], Any]]] = [
            ("page 1, sort id, ...Scene (stashapi)", lambda: page({"per_page": 100, "page": 1, "sort": "id"})),
            (f"page {deep}, sort id, ...Scene", lambda: page({"per_page": 100, "page": deep, "sort": "id"})),
            ("page 1, sort id, SCENE_FIELDS (ours)",
             lambda: page({"per_page": 100, "page": 1, "sort": "id"}, queries.SCENE_FIELDS)),
            ("page 1, sort title, SCENE_FIELDS",
             lambda: page({"per_page": 100, "page": 1, "sort": "title"}, queries.SCENE_FIELDS)),
            ("page 1, sort updated_at DESC, SCENE_FIELDS",
             lambda: page({"per_page": 100, "page": 1, "sort": "updated_at", "direction": "DESC"},
                          queries.SCENE_FIELDS)),
            ("updated_at > stamp, page 1, SCENE_FIELDS",
             lambda: page({"per_page": 100, "page": 1, "sort": "id"}, queries.SCENE_FIELDS,
                          {"updated_at": {"value": since, "modifier": "GREATER_THAN"}})),
        ]
        for label, fn in cases:
            ms, (count, scenes) = timed(fn, repeat)
            size = len(json.dumps(scenes, ensure_ascii=False).encode()) / 1024
            rows.append([label, f"{len(scenes)}", f"{ms:.0f}", f"{size:.0f}", f"count {count:,}"])

        client = StashClient(stash.connection(), StashLog(stream=io.StringIO()))
        client.count_scenes()  # connect first: the row is one page, not construction

        def keyset() -> list[Any]:
            scenes = []
            for scene in client.iter_scenes(after_id=n // 2, page_size=100):
                scenes.append(scene)
                if len(scenes) == 100:
                    break
            return scenes

        ms, scenes = timed(keyset, repeat)
        rows.append([f"stash.client keyset page (id > {n // 2:,})", f"{len(scenes)}", f"{ms:.0f}", "-",
                     "Scene records"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    rows, library = [], None
    for n in sizes:
        row, library = measure_generation(n, args.seed)
        rows.append(row)
        print(f"(generated {n:,})", file=sys.stderr, flush=True)
    print("generate_library(n): untraced wall time; peak and retained Python memory under tracemalloc\n")
    print(table(["scenes", "files", "seconds", "peak MiB", "retained MiB", "traced s"], rows))
    print()
    assert library is not None
    print(f"findScenes round trips at {len(library.scenes):,} scenes, loopback, median of {args.repeat}\n")
    print(table(["request", "scenes", "ms", "KiB", "note"], round_trips(library, args.repeat)))
    largest = rows[-1]
    emit(Figure(f"test kit, not the plugin: `generate_library` of {largest[0]} scenes for the emulated Stash",
                f"{largest[2]} s, peak {largest[3]} MiB under tracemalloc", internals=True))


if __name__ == "__main__":
    main()
