"""Stash's log protocol and stdin/stdout handling."""

from __future__ import annotations

import io
import json

import pytest

from base.protocol import MAX_LINE, InputError, StashLog, read_input, write_result
from emulators.host import parse_stderr


def emitted(fn) -> tuple[list[tuple[str, str]], list[float]]:
    stream = io.StringIO()
    log = StashLog(stream=stream, debug_enabled=True)
    fn(log)
    return parse_stderr(stream.getvalue(), "error", is_task=True)


def test_levels_use_stash_prefixes() -> None:
    logs, _ = emitted(lambda log: (log.info("a"), log.warning("b"), log.error("c"), log.debug("d")))
    assert logs == [("info", "a"), ("warning", "b"), ("error", "c"), ("debug", "d")]


def test_debug_is_dropped_unless_enabled() -> None:
    stream = io.StringIO()
    StashLog(stream=stream).debug("hidden")
    assert stream.getvalue() == ""


def test_multiline_message_keeps_its_level_on_every_line() -> None:
    logs, _ = emitted(lambda log: log.error("first\nsecond\n\nthird"))
    assert logs == [("error", "first"), ("error", "second"), ("error", "third")]


def test_long_line_is_cut_below_stash_reader_limit() -> None:
    stream = io.StringIO()
    StashLog(stream=stream).info("x" * 100_000)
    assert max(len(line) for line in stream.getvalue().splitlines()) <= MAX_LINE + 3


def test_progress_is_clamped_to_unit_interval() -> None:
    _, progress = emitted(lambda log: (log.progress(-1), log.progress(0.5), log.progress(7)))
    assert progress == [0.0, 0.5, 1.0]


def test_secrets_are_masked_in_logs_and_result() -> None:
    stream, out = io.StringIO(), io.StringIO()
    log = StashLog(stream=stream)
    log.add_secrets(["s3cr3t-value"])
    log.error("token s3cr3t-value in http://plex/?X-Plex-Token=abcdef&x=1")
    write_result(output={"t": "s3cr3t-value"}, log=log, stream=out)
    assert "s3cr3t-value" not in stream.getvalue() + out.getvalue()
    assert "abcdef" not in stream.getvalue()


def test_closed_stderr_never_raises() -> None:
    class Closed(io.StringIO):
        def write(self, _s: str) -> int:
            raise BrokenPipeError

    StashLog(stream=Closed()).error("still fine")


def test_result_is_one_json_object() -> None:
    out = io.StringIO()
    write_result(output={"n": 1}, error=None, stream=out)
    assert json.loads(out.getvalue()) == {"output": {"n": 1}, "error": None}


@pytest.mark.parametrize("text", ["", "   ", "not json", "[1,2]", '{"args": []}', "\xff"])
def test_bad_stdin_is_a_clear_error(text: str) -> None:
    with pytest.raises(InputError) as info:
        read_input(io.StringIO(text))
    assert "\n" not in str(info.value)


def test_stdin_without_connection_is_accepted() -> None:
    inp = read_input(io.StringIO('{"args": {"mode": "all"}}'))
    assert inp.mode == "all" and inp.server_connection == {}
