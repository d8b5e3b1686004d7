"""`python -m bench`: the table it prints, the benches it knows, and the README's copy of it.

The benches themselves are too slow for the suite; what is checked here is everything
around them: that the printer renders given figures exactly, that every bench script is
listed and answers `--help`, that figures survive the trip through a bench's stdout, and
that the README's Performance table is one the printer made.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.figures import Figure, emit, parse
from bench.suite import (
    BEGIN,
    BENCHES,
    END,
    NOT_FIGURES,
    README,
    ROOT,
    Bench,
    Report,
    Row,
    block_of,
    paste,
    read_block,
    render,
    run_bench,
    selected,
)

REPORT = Report(date="2026-12-03", machine="2 cores (Test CPU), Python 3.11.9, Linux 6.1 (x86_64)", rows=[
    Row(Figure("Sync All, 2,000 scenes", "45 scenes/s; **0.61x**"), "python bench/bench_sync_all.py --scenes 2000"),
    Row(Figure("next due job", "0.004 ms", internals=True), "python bench/bench_queue.py"),
    Row(Figure("a | in a cell", "1 | 2"), "python bench/bench_hook.py"),
])


def test_the_printer_renders_host_rows_then_internals_with_date_machine_and_commands() -> None:
    assert render(REPORT) == "\n".join([
        BEGIN,
        "Measured on 2026-12-03 on 2 cores (Test CPU), Python 3.11.9, Linux 6.1 (x86_64). "
        "Each row's command measures it again alone.",
        "",
        "| what (the plugin run as Stash runs it) | figure | command |",
        "|---|---|---|",
        "| Sync All, 2,000 scenes | 45 scenes/s; **0.61x** | `python bench/bench_sync_all.py --scenes 2000` |",
        "| a \\| in a cell | 1 \\| 2 | `python bench/bench_hook.py` |",
        "",
        "Internals, timed in-process by benches that call one component directly: they describe that component, "
        "not the cost of a task.",
        "",
        "| what (internals: one component timed in-process) | figure | command |",
        "|---|---|---|",
        "| next due job | 0.004 ms | `python bench/bench_queue.py` |",
        END,
    ])


def test_a_rendered_table_reads_back_to_the_same_figures() -> None:
    back = read_block(render(REPORT))
    assert (back.date, back.machine, back.quick) == (REPORT.date, REPORT.machine, False)
    assert sorted(back.rows, key=repr) == sorted(REPORT.rows, key=repr)


def test_a_quick_run_says_so_in_its_table() -> None:
    quick = Report(date="2026-12-03", machine="m", quick=True, rows=REPORT.rows)
    text = render(quick)
    assert "by `python -m bench --quick` (small sizes: not the README's figures) on m." in text
    assert read_block(text).quick


def test_the_readme_performance_table_is_one_the_printer_made() -> None:
    block = block_of(README.read_text(encoding="utf-8"))
    report = read_block(block)  # every line is one the printer makes ...
    assert render(report) == block  # ... in the order and shape it makes them
    assert not report.quick, "the README quotes a quick run"
    assert report.rows and any(r.figure.internals for r in report.rows) and any(not r.figure.internals for r in report.rows)
    default_commands = {" ".join(b.command()) for b in BENCHES if b.default}
    assert {r.command for r in report.rows} == default_commands  # every default bench, at its full size


def test_paste_replaces_only_the_block() -> None:
    readme = f"intro\n\n{render(REPORT)}\n\nafter\n"
    new = Report(date="2027-01-01", machine="m", rows=REPORT.rows[:1])
    assert paste(readme, render(new)) == f"intro\n\n{render(new)}\n\nafter\n"
    with pytest.raises(ValueError):
        block_of("no table here")


def test_every_bench_script_is_listed_and_each_listed_one_exists() -> None:
    scripts = {f"bench/{p.name}" for p in (ROOT / "bench").glob("bench_*.py")}
    listed = {b.script for b in BENCHES}
    assert scripts - set(NOT_FIGURES) == listed, "a bench is neither run by python -m bench nor said to quote no figure"
    assert all((ROOT / script).is_file() for script in listed)
    assert len({b.name for b in BENCHES}) == len(BENCHES)


@pytest.mark.parametrize("script", sorted({b.script for b in BENCHES}))
def test_each_bench_answers_help(script: str) -> None:
    done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_selection_by_default_only_skip_and_quick() -> None:
    assert [b.name for b in selected([], [], quick=False)] == [b.name for b in BENCHES if b.default]
    assert [b.name for b in selected(["generator", "hook"], [], quick=False)] == ["hook", "generator"]
    assert "sync_all_20k" not in [b.name for b in selected([], [], quick=True)]
    assert "hook" not in [b.name for b in selected([], ["hook"], quick=False)]
    with pytest.raises(SystemExit):
        selected(["no_such_bench"], [], quick=False)


def test_figures_come_back_from_a_bench_process_and_its_other_output_is_passed_on(tmp_path: Path) -> None:
    script = tmp_path / "bench_fake.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from bench.figures import Figure, emit\n"
        "print('| a human table |')\n"
        "emit(Figure('thing, ' + sys.argv[1], '3 ms'))\n"
        "emit(Figure('part', 'é | 1', internals=True))\n")
    echoed: list[str] = []
    outcome = run_bench(Bench("fake", str(script), ("full",), ("small",)), quick=True, echo=echoed.append)
    assert outcome.returncode == 0 and echoed == ["| a human table |"]
    assert outcome.figures == [Figure("thing, small", "3 ms"), Figure("part", "é | 1", internals=True)]
    assert outcome.command == f"python {script} small"


def test_emit_and_parse_are_one_format(capsys: pytest.CaptureFixture[str]) -> None:
    emit(Figure("w", "v", internals=True))
    print("other line")
    assert parse(capsys.readouterr().out) == [Figure("w", "v", internals=True)]
