"""`base.arenas`: the limit takes where glibc's malloc is, and is harmless where it is not."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from base.arenas import ARENAS, limit_malloc_arenas

#: Twelve threads allocating at once, as a drain's do; then the arenas' heaps counted in
#: /proc/self/maps (each heap but the main one leaves a reserved, inaccessible tail).
PROGRAM = """
import sys, threading
from concurrent.futures import ThreadPoolExecutor
from base.arenas import limit_malloc_arenas
took = limit_malloc_arenas() if sys.argv[1] == "limit" else None
together = threading.Barrier(12)
def work(i):
    together.wait()
    return sum(len(bytes(5000 + j)) for j in range(2000))
with ThreadPoolExecutor(12) as pool:
    list(pool.map(work, range(12)))
heaps = 0
for line in open("/proc/self/maps"):
    parts = line.split()
    start, end = (int(x, 16) for x in parts[0].split("-"))
    heaps += parts[1] == "---p" and len(parts) < 6 and end - start > 1 << 20
print(took, heaps)
"""


def arena_heaps(mode: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    took, heaps = done.stdout.split()
    return took, int(heaps)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_threads_allocating_at_once_share_two_arenas_once_limited() -> None:
    assert arena_heaps("limit") == ("True", ARENAS - 1)  # the main arena has no such heap
    assert arena_heaps("none")[1] > ARENAS  # what the limit is for


def test_a_c_library_without_the_knob_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert limit_malloc_arenas() is False
