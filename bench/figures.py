"""The figures a bench hands to `python -m bench`, in the one line format both sides use.

Each bench prints its own tables for a person; beside them it prints one `FIGURE_PREFIX`
line per figure the README's Performance table quotes, so the table is assembled from what
the benches measured rather than copied from their prose by hand. The bench knows what it
measured and at what size; the runner knows the exact command it ran, which is the command
the table shows.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import TextIO

FIGURE_PREFIX = "BENCH-FIGURE "


@dataclass(frozen=True)
class Figure:
    """One row of the Performance table, less its command.

    `internals`: a component timed in-process, not the plugin run as Stash runs it; such rows
    describe that component, not the cost of a task, and go to their own table.
    """

    what: str
    value: str
    internals: bool = False


def emit(figure: Figure, out: TextIO | None = None) -> None:
    print(FIGURE_PREFIX + json.dumps(asdict(figure), ensure_ascii=False), file=out or sys.stdout, flush=True)


def parse(text: str) -> list[Figure]:
    """The figures in a bench's output, in the order it printed them; other lines ignored."""
    figures = []
    for line in text.splitlines():
        if line.startswith(FIGURE_PREFIX):
            data = json.loads(line[len(FIGURE_PREFIX):])
            figures.append(Figure(what=data["what"], value=data["value"], internals=bool(data.get("internals"))))
    return figures
