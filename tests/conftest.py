"""Shared test set-up: the repo on sys.path, pinned client-library config, and the secret audit.

Every plugin run the tests make through the Stash host is recorded with the secrets that
run was given; at the end of the session one check fails the run if any log line, error or
stdout text contains one of them (issue 2, point 6).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# plexapi reads these once per object; pin them so a developer's config.ini cannot leak in.
os.environ.setdefault("PLEXAPI_PLEXAPI_AUTORELOAD", "false")
os.environ.setdefault("PLEXAPI_HEADER_IDENTIFIER", "stash2plex-tests")

from tests.secret_audit import AUDIT  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-seed", type=int, default=None,
                     help="seed of the chaos soak's schedule (else $STASH2PLEX_CHAOS_SEED, else a fixed one)")
    parser.addoption("--chaos-seconds", type=float, default=None,
                     help="seconds of chaos in the soak (else $STASH2PLEX_CHAOS_SECONDS, else 60)")


def _stray_workers(base: Path) -> list[tuple[int, str]]:
    """Plugin processes still running from this session's temporary folders (Linux /proc).

    Inside `base` as a path, not as a string prefix: another session running beside this one
    has a base such as `pytest-404` beside our `pytest-40`, and its plugin processes are not
    ours to kill.
    """
    found = []
    root = Path(base).resolve()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if Path(cwd).is_relative_to(root) and any(arg.endswith(b"Stash2Plex.py") for arg in cmdline):
            found.append((int(entry.name), cwd))
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = factory.getbasetemp() if factory is not None and factory._basetemp is not None else None
    stray = _stray_workers(base) if base is not None else []
    deadline = time.monotonic() + 60.0  # a worker finishing its last job may exit on its own, slowly when busy
    while stray and time.monotonic() < deadline:
        time.sleep(0.2)
        stray = _stray_workers(base)
    if stray:  # a test left a background worker behind: it would outlive CI's checkout
        import signal

        for pid, _ in stray:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if reporter is not None:
            reporter.write_line(f"STRAY WORKERS: {len(stray)} plugin process(es) outlived their test:", red=True)
            for pid, cwd in stray[:20]:
                reporter.write_line(f"  pid {pid} in {cwd}", red=True)
        session.exitstatus = 1
    leaks = AUDIT.leaks()
    if leaks:
        if reporter is not None:
            reporter.write_line(f"SECRET AUDIT FAILED: {len(leaks)} transcript(s) contain a secret:", red=True)
            for where, secret_hint in leaks[:20]:
                reporter.write_line(f"  {where}: contains {secret_hint}", red=True)
        session.exitstatus = 1
