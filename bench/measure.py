"""What the host-driven benches measure about a plugin process, and how they print it."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path


class PeakSampler:
    """The highest VmHWM (peak resident set since exec) of the plugin processes this bench
    started (children of this process whose command line holds `script`), sampled from
    /proc while they run.

    `getrusage(RUSAGE_CHILDREN).ru_maxrss` would not do: a child forked from this large
    process is charged the parent's pages until it execs.
    """

    def __init__(self, script: str = "Stash2Plex.py", interval: float = 0.2) -> None:
        self.script = script.encode()
        self.interval = interval
        self.peak_kib = 0
        self.cpu_s = 0.0  # the sampling's own CPU (reading /proc), for a bench to leave out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024.0

    def _run(self) -> None:
        me = str(os.getpid()).encode()
        while not self._stop.wait(self.interval):
            for pid in self._children(me):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    text = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
                if self.script in cmdline and "VmHWM" in fields:
                    self.peak_kib = max(self.peak_kib, int(fields["VmHWM"].split()[0]))
            self.cpu_s = time.thread_time()

    @staticmethod
    def _children(me: bytes) -> list[str]:
        """Processes whose parent is `me`, from each process's one-line `stat` (its parent id
        follows the parenthesised name): reading every process's `status` in full took a
        fifth of a busy bench's own CPU."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat[stat.rfind(b")") + 2:].split()[1:2] == [me]:
                out.append(pid)
        return out


def child_cpu_s() -> float:
    """User + system seconds of the finished children (the plugin runs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def own_cpu_s() -> float:
    """User + system seconds of this process so far: the emulators serve the plugin from
    here, so a delta over a run is what answering it cost (plus the samplers, a little)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def profiling_python(out_dir: Path, python: str) -> str:
    """An interpreter for the host that runs the plugin under cProfile, one
    `plugin-<pid>.prof` per run in `out_dir`: where a plugin run spends its CPU, read with
    `python -m pstats`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapper = out_dir / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{python}" -m cProfile -o "{out_dir}/plugin-$$.prof" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)
