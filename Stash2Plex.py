#!/usr/bin/env python3
"""Stash2Plex: the one program Stash runs, for every hook and every task.

It stays thin: read Stash's JSON from stdin, pick the handler, print one JSON result on
stdout. It is also the single error boundary: expected failures become one error line in
Stash's log; anything unexpected becomes one error line plus the traceback at debug level.
Only the standard library and `plugin` are imported up front, so a hook stays fast.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
# A release ships its pure-Python dependencies in vendor/ (Stash's Docker image lacks them);
# they come right after our own code so the versions we tested are the ones that run.
if (HERE / "vendor").is_dir():
    sys.path.insert(1, str(HERE / "vendor"))

from base.errors import Stash2PlexError  # noqa: E402
from base.protocol import InputError, PluginInput, StashLog, read_input, write_result  # noqa: E402

if TYPE_CHECKING:
    from plugin.dispatch import Route


def run(inp: PluginInput, log: StashLog) -> object:
    """Dispatch one hook or task and return its output."""
    from base.datadir import data_dir
    from plugin import dispatch

    target = dispatch.route(inp.args)
    try:
        return _run(target, inp, log)
    except (OSError, sqlite3.Error) as exc:  # a broken data folder, said with its path and fix
        from sync_queue.storage import explain

        known = explain(exc, data_dir(inp.server_connection, create=False))
        if known is None:
            raise
        raise known from exc


def _run(target: Route, inp: PluginInput, log: StashLog) -> object:
    from base.datadir import data_dir
    from plugin import dispatch

    folder = data_dir(inp.server_connection)
    from plugin.upgrade_note import ensure_notes  # stdlib only; two stats when the notes exist

    ensure_notes(folder, HERE)
    if target.kind == "hook":
        from plugin.hooks import handle_hook

        return handle_hook(inp, folder, HERE / "Stash2Plex.py", time.time(), log)
    replace_damaged_database(folder, target.kind, log)
    from base.arenas import limit_malloc_arenas

    limit_malloc_arenas()  # before a task's or the worker's threads start
    from worker.runtime import RunContext

    handler = dispatch.task_handler(target.name)
    return handler(RunContext(inp, log, folder, HERE / "Stash2Plex.py"))


def replace_damaged_database(folder: Path, kind: str, log: StashLog) -> None:
    """Replace a damaged stash2plex.db before a task or the worker opens it, and say so where
    the user will read it: Stash's log for a task, worker.log for the detached worker."""
    from sync_queue.recovery import check_database
    from worker.handover import processor

    message = check_database(folder, time.time(), take_over=processor if kind == "task" else None)
    if message is None:
        return
    log.warning(f"Stash2Plex: {message}")
    if kind == "internal":
        from worker.filelog import open_worker_log

        file_log = open_worker_log(folder)
        file_log.warning(message)
        file_log.close()


def report_bug(exc: BaseException, log: StashLog) -> None:
    """One error line for Stash's log; the traceback goes to debug level, where it helps."""
    import traceback  # imported here: 25 ms a hook should not pay for a bug it does not have

    message = f"unexpected {type(exc).__name__}: {exc}"
    log.error(f"Stash2Plex: {message} (details at debug level)")
    log.debug_enabled = True
    log.debug(traceback.format_exc())
    write_result(error=message, log=log)


def main() -> int:
    log = StashLog(stream=sys.stderr)
    try:
        inp = read_input(sys.stdin)
    except InputError as exc:
        log.error(f"Stash2Plex: {exc}")
        write_result(error=str(exc), log=log)
        return 0
    log.add_secrets(inp.secrets())
    try:
        output = run(inp, log)
    except Stash2PlexError as exc:
        log.error(f"Stash2Plex: {exc}")
        write_result(error=str(exc), log=log)
    except ModuleNotFoundError as exc:
        from base.deps import missing_dependency

        known = missing_dependency(exc, HERE)
        if known is None:
            report_bug(exc, log)
        else:
            log.error(f"Stash2Plex: {known}")
            write_result(error=str(known), log=log)
    except Exception as exc:  # the one boundary for bugs: never a raw traceback at error level
        report_bug(exc, log)
    else:
        write_result(output=output, log=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
