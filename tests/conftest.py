"""Shared test set-up: the repo on sys.path, pinned client-library config, and the secret audit.

Every plugin run the tests make through the Stash host is recorded with the secrets that
run was given; at the end of the session one check fails the run if any log line, error or
stdout text contains one of them (issue 2, point 6).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# plexapi reads these once per object; pin them so a developer's config.ini cannot leak in.
os.environ.setdefault("PLEXAPI_PLEXAPI_AUTORELOAD", "false")
os.environ.setdefault("PLEXAPI_HEADER_IDENTIFIER", "stash2plex-tests")

from tests.secret_audit import AUDIT  # noqa: E402


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = AUDIT.leaks()
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"SECRET AUDIT FAILED: {len(leaks)} transcript(s) contain a secret:", red=True)
            for where, secret_hint in leaks[:20]:
                reporter.write_line(f"  {where}: contains {secret_hint}", red=True)
        session.exitstatus = 1
