"""Every bench, one after another, then the README's Performance table (`python -m bench`).

    python -m bench [--quick] [--only NAME,...] [--skip NAME,...] [--readme] [--list]

Each bench runs as its own subprocess with exactly the command its rows show, so any row
can be measured again alone by copying that command. A bench's own tables and progress go
to stderr as it runs; its figures come back as `bench.figures` lines, and the table is
printed on stdout between the README's markers, ready to paste (`--readme` pastes it into
README.md itself). The full sizes are the ones the README quotes; `--quick` runs every bench
small, to check the machinery in minutes, and says so in the table it prints.

The benches run one at a time: two at once would measure each other.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.figures import FIGURE_PREFIX, Figure, parse

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN = "<!-- python -m bench: begin -->"
END = "<!-- python -m bench: end -->"
HOST_HEADER = "| what (the plugin run as Stash runs it) | figure | command |"
INTERNALS_HEADER = "| what (internals: one component timed in-process) | figure | command |"
RULE = "|---|---|---|"
QUICK_NOTE = "by `python -m bench --quick` (small sizes: not the README's figures)"
INTERNALS_NOTE = ("Internals, timed in-process by benches that call one component directly: they describe "
                  "that component, not the cost of a task.")


@dataclass(frozen=True)
class Bench:
    """One bench command. `quick` is its small run (None: left out of a quick run);
    `default`: part of a plain `python -m bench` (otherwise only with `--only`)."""

    name: str
    script: str  # relative to the repository root
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] | None = ()
    default: bool = True

    def command(self, quick: bool = False) -> list[str]:
        args = self.quick if quick else self.args
        return ["python", self.script, *(args or ())]


BENCHES: tuple[Bench, ...] = (
    Bench("sync_all", "bench/bench_sync_all.py", ("--scenes", "2000"), ("--scenes", "60")),
    Bench("sync_all_20k", "bench/bench_sync_all.py", ("--scenes", "20000", "--networks", "loopback", "--rounds", "1"), None),
    Bench("collections", "bench/bench_collections.py", (), ("--scenes", "200", "--groups", "20")),
    Bench("collections_dates_against", "bench/bench_collections.py", ("--dates-against",),
          ("--scenes", "200", "--groups", "20", "--dates-against")),
    Bench("hook", "bench/bench_hook.py", (), ("--runs", "5", "--concurrent", "20")),
    Bench("reconcile", "bench/bench_reconcile.py", (), ("--reconcile-scenes", "1000", "--gaps", "10")),
    Bench("watch_history", "bench/bench_watch_history.py", (), ("--plays", "1000", "--scenes", "200", "--daily", "20")),
    Bench("plex_requests", "bench/bench_plex_requests.py", (), ("--scenes", "100")),
    Bench("queue", "bench/bench_queue.py", (), ("--events", "1000", "--scenes", "1000", "--syncs", "1")),
    Bench("fanout", "bench/bench_fanout.py", (), ("--scenes", "500", "--ledger", "2000")),
    # The test kit's library generator, not the plugin: measured on request only.
    Bench("generator", "bench/bench_generator.py", (), ("--sizes", "1000", "--repeat", "1"), default=False),
)

#: Bench scripts that quote no Performance figure, and why: `python -m bench` leaves them out.
NOT_FIGURES = {"bench/bench_chaos.py": "a soak: minutes of random faults checked against invariants; it quotes no figure"}


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu: str
    python: str
    os: str

    def describe(self) -> str:
        return f"{self.cores} cores ({self.cpu}), Python {self.python}, {self.os}"


def this_machine() -> Machine:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return Machine(cores=os.cpu_count() or 1, cpu=re.sub(r"\s+", " ", cpu),
                   python=platform.python_version(), os=f"{platform.system()} {platform.release()} ({platform.machine()})")


@dataclass(frozen=True)
class Row:
    figure: Figure
    command: str


@dataclass
class Report:
    date: str
    machine: str
    quick: bool = False
    rows: list[Row] = field(default_factory=list)


# --- the table: rendered from a report, and read back from README.md --------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _uncell(text: str) -> str:
    return text.replace("\\|", "|")


def render(report: Report) -> str:
    """The Performance table block, markers included. Pure: the date and machine are given."""
    how = f" {QUICK_NOTE}" if report.quick else ""
    lines = [BEGIN, f"Measured on {report.date}{how} on {report.machine}. Each row's command measures it again alone.",
             "", HOST_HEADER, RULE]
    host = [r for r in report.rows if not r.figure.internals]
    internals = [r for r in report.rows if r.figure.internals]
    lines += [f"| {_cell(r.figure.what)} | {_cell(r.figure.value)} | `{r.command}` |" for r in host]
    if internals:
        lines += ["", INTERNALS_NOTE, "", INTERNALS_HEADER, RULE]
        lines += [f"| {_cell(r.figure.what)} | {_cell(r.figure.value)} | `{r.command}` |" for r in internals]
    lines.append(END)
    return "\n".join(lines)


_HEAD = re.compile(rf"Measured on (?P<date>\S+)(?P<quick> {re.escape(QUICK_NOTE)})? on (?P<machine>.+)\. "
                   r"Each row's command measures it again alone\.")
_ROW = re.compile(r"\| (?P<what>(?:[^|\\]|\\.)+) \| (?P<value>(?:[^|\\]|\\.)+) \| `(?P<command>python bench/[^`]+)` \|")


def block_of(text: str) -> str:
    """The table block between the markers (markers included); ValueError if there is none."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no block between {BEGIN!r} and {END!r}")
    return text[start:end + len(END)]


def read_block(block: str) -> Report:
    """A rendered block read back; ValueError on any line the printer would not have made."""
    lines = block.split("\n")
    if lines[0] != BEGIN or lines[-1] != END:
        raise ValueError("markers missing")
    head = _HEAD.fullmatch(lines[1])
    if head is None:
        raise ValueError(f"not a table head: {lines[1]!r}")
    report = Report(date=head["date"], machine=head["machine"], quick=head["quick"] is not None)
    internals = False
    for line in lines[2:-1]:
        if line in ("", RULE, HOST_HEADER) or line == INTERNALS_NOTE:
            continue
        if line == INTERNALS_HEADER:
            internals = True
            continue
        row = _ROW.fullmatch(line)
        if row is None:
            raise ValueError(f"not a table row: {line!r}")
        report.rows.append(Row(Figure(_uncell(row["what"]), _uncell(row["value"]), internals), row["command"]))
    return report


def paste(readme: str, block: str) -> str:
    """README text with its table block replaced by `block`."""
    old = block_of(readme)
    return readme.replace(old, block, 1)


# --- running --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    bench: Bench
    command: str
    figures: list[Figure]
    returncode: int
    seconds: float


def run_bench(bench: Bench, quick: bool, echo: Callable[[str], None]) -> Outcome:
    """Runs one bench as a user would, passing its human output to `echo` line by line."""
    shown = bench.command(quick)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / bench.script), *shown[2:]], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, encoding="utf-8")
    assert proc.stdout is not None
    kept = []
    for line in proc.stdout:
        if line.startswith(FIGURE_PREFIX):
            kept.append(line)
        else:
            echo(line.rstrip("\n"))
    returncode = proc.wait()
    return Outcome(bench, " ".join(shown), parse("".join(kept)), returncode, time.monotonic() - started)


def selected(only: Sequence[str], skip: Sequence[str], quick: bool) -> list[Bench]:
    known = {b.name for b in BENCHES}
    unknown = (set(only) | set(skip)) - known
    if unknown:
        raise SystemExit(f"unknown bench {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    chosen = [b for b in BENCHES if (b.name in only if only else b.default) and b.name not in skip]
    return [b for b in chosen if not quick or b.quick is not None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every bench at small sizes (not the README's figures)")
    parser.add_argument("--only", default="", help="comma list of benches to run (see --list)")
    parser.add_argument("--skip", default="", help="comma list of benches to leave out")
    parser.add_argument("--readme", action="store_true", help="also paste the table into README.md")
    parser.add_argument("--list", action="store_true", help="list the benches and their commands, run nothing")
    args = parser.parse_args(argv)
    split = lambda text: [n for n in text.split(",") if n]  # noqa: E731
    benches = selected(split(args.only), split(args.skip), args.quick)
    if args.list:
        for b in BENCHES:
            notes = ([] if b.default else ["only with --only"]) + ([] if b.quick is not None else ["not in --quick"])
            print(f"{b.name:<14} {' '.join(b.command())}" + (f"  ({'; '.join(notes)})" if notes else ""))
        return 0
    report = Report(date=datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
                    machine=this_machine().describe(), quick=args.quick)
    failed = []
    started = time.monotonic()
    for bench in benches:
        print(f"== {bench.name}: {' '.join(bench.command(args.quick))}", file=sys.stderr, flush=True)
        outcome = run_bench(bench, args.quick, lambda line: print(line, file=sys.stderr, flush=True))
        print(f"== {bench.name}: exit {outcome.returncode}, {outcome.seconds:.0f} s, {len(outcome.figures)} figures",
              file=sys.stderr, flush=True)
        if outcome.returncode != 0 or not outcome.figures:
            failed.append(f"{bench.name} (exit {outcome.returncode}, {len(outcome.figures)} figures)")
        report.rows += [Row(f, outcome.command) for f in outcome.figures]
    block = render(report)
    print(block)
    print(f"(all benches: {time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.readme:
        if args.quick or args.only or args.skip:
            print("not pasted into README.md: a quick or partial run is not the README's table", file=sys.stderr)
        else:
            README.write_text(paste(README.read_text(encoding="utf-8"), block), encoding="utf-8")
            print("pasted into README.md", file=sys.stderr)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
