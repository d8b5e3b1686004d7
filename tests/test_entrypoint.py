"""The entrypoint as Stash runs it: bad input, unknown modes and hooks, tasks not built yet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulators.host import StashHost
from plugin.dispatch import INTERNAL, TASKS, task_handler
from tests.plugin_host import make_host


@pytest.fixture()
def host(tmp_path: Path) -> StashHost:
    # Port 9 (discard) on loopback: nothing these runs do may reach a server.
    return make_host(tmp_path / "stash", port=9)


def assert_clean_failure(result, *needles: str) -> None:
    assert result.returncode == 0
    json.loads(result.stdout)  # stdout is only the result object
    assert result.error and all(n in result.error for n in needles), result.error
    errors = result.lines("error")
    assert len(errors) == 1, result.logs
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("stdin", ["", "{not json", "[]", '{"server_connection": 5}'])
def test_malformed_stdin(host: StashHost, stdin: str) -> None:
    assert_clean_failure(host.run_raw(stdin), "stdin")


def test_unknown_mode_lists_the_known_ones(host: StashHost) -> None:
    result = host.run_raw({"server_connection": {}, "args": {"mode": "sync_everything"}})
    assert_clean_failure(result, "sync_everything", "process_queue")


def test_missing_mode(host: StashHost) -> None:
    assert_clean_failure(host.run_raw({"server_connection": {}, "args": {}}), "mode")


def test_unknown_hook_type(host: StashHost) -> None:
    stdin = {"server_connection": {}, "args": {"hookContext": {"type": "Gallery.Update.Post", "id": 3}}}
    assert_clean_failure(host.run_raw(stdin, is_task=False), "Gallery.Update.Post")


def test_runs_from_a_foreign_working_directory(host: StashHost) -> None:
    assert host.workdir is not None and host.workdir.resolve() != host.plugin_dir.resolve()
    result = host.run_raw({"server_connection": {}, "args": {"mode": "nope"}})
    assert result.returncode == 0 and result.error


@pytest.mark.parametrize("mode", [*TASKS, *INTERNAL])
def test_every_declared_mode_has_a_handler_that_imports(mode: str) -> None:
    handler = task_handler(mode)
    assert callable(handler) and handler.__module__ == (INTERNAL.get(mode) or TASKS[mode][1]).split(":")[0]
