"""Builds a Stash host for the repo's plugin, wired into the secret audit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulators.host import RunResult, StashHost
from tests.secret_audit import AUDIT

ROOT = Path(__file__).resolve().parent.parent


def make_host(stash_dir: Path, port: int, cookie_factory: Callable[[], dict[str, Any] | None] | None = None,
              env: dict[str, str] | None = None) -> StashHost:
    def audit(result: RunResult) -> None:
        AUDIT.record(f"plugin run (rc={result.returncode})", result.stdout + result.stderr)

    def cookie() -> dict[str, Any] | None:
        value = cookie_factory() if cookie_factory else None
        if value:
            AUDIT.add_secret(value.get("Value"))
        return value

    return StashHost(plugin_dir=ROOT, connection={"Scheme": "http", "Host": "127.0.0.1", "Port": port},
                     stash_dir=stash_dir, cookie_factory=cookie, env=env or {}, on_result=audit)
