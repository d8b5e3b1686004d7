"""The chaos soak in CI: about a minute of the whole plugin under many faults at once.

One seeded run of `bench.bench_chaos` (see its docstring for what it mixes and checks). The
seed is fixed so CI runs one known schedule; `--chaos-seed S` (or $STASH2PLEX_CHAOS_SEED)
runs another, `--chaos-seconds N` a longer one. A failure prints the seed and the command
that replays the schedule outside pytest.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.bench_chaos import CI_SECONDS, DEFAULT_SEED, command, run_soak
from tests.secret_audit import AUDIT

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds and kills processes via /proc")


def _option(request: pytest.FixtureRequest, name: str, env: str, default: float) -> float:
    given = request.config.getoption(name)
    if given is not None:
        return given
    return float(os.environ[env]) if os.environ.get(env) else default


@pytest.mark.chaos
@pytest.mark.slow
def test_chaos_soak_loses_duplicates_and_mixes_up_nothing(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    seed = int(_option(request, "--chaos-seed", "STASH2PLEX_CHAOS_SEED", DEFAULT_SEED))
    seconds = _option(request, "--chaos-seconds", "STASH2PLEX_CHAOS_SECONDS", CI_SECONDS)
    scenes = 240
    try:
        report = run_soak(seconds, seed, scenes, work_dir=tmp_path,
                          on_result=lambda r: AUDIT.record(f"chaos soak seed {seed}", r.stdout + r.stderr))
    except Exception as exc:
        raise AssertionError(f"chaos soak seed {seed} broke: {exc!r}\nreproduce: "
                             f"{command(seconds, seed, scenes)}") from exc
    print(report.text())
    assert report.ok, report.text()
