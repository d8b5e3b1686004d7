"""Stash's raw-plugin protocol: JSON on stdin, one JSON result on stdout, log lines on stderr.

Stash reads stdout to EOF and parses it as `{"output": ..., "error": ...}`, so nothing else
may ever be printed there. Every stderr line carries a level prefix (`\\x01<c>\\x02`); a line
without one would be logged at error level. Stash's reader gives up on lines over 64 KiB,
after which every later write fails, so long messages are cut.

This module is on the hook's fast path: standard library only.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

MAX_LINE = 64_000
_LEVELS = {"trace": "t", "debug": "d", "info": "i", "warning": "w", "error": "e"}
_URL_SECRETS = re.compile(r"(?i)((?:x-plex-token|apikey|api_key|token)=)[^&\s\"']+")
#: A lone surrogate (JSON can carry "\\ud800", UTF-8 cannot): writing one to a UTF-8 stream
#: raises, and the line or the whole result would be lost. U+FFFD stands in for it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class InputError(Exception):
    """Stdin was not the JSON Stash sends; the message says what was wrong."""


@dataclass(frozen=True)
class PluginInput:
    """What Stash passed us, with the few accessors the dispatcher needs."""

    server_connection: dict[str, Any]
    args: dict[str, Any]

    @property
    def hook_context(self) -> dict[str, Any] | None:
        ctx = self.args.get("hookContext")
        return ctx if isinstance(ctx, dict) else None

    @property
    def mode(self) -> str | None:
        mode = self.args.get("mode")
        return str(mode) if mode is not None else None

    def secrets(self) -> tuple[str, ...]:
        """Credentials Stash handed us; they must never be echoed anywhere."""
        found = []
        cookie = self.server_connection.get("SessionCookie")
        if isinstance(cookie, dict) and cookie.get("Value"):
            found.append(str(cookie["Value"]))
        for key in ("ApiKey", "apiKey", "api_key"):
            if self.server_connection.get(key):
                found.append(str(self.server_connection[key]))
        return tuple(found)


def read_input(stream: IO[str]) -> PluginInput:
    """Parse Stash's stdin; raise InputError with a one-line reason on anything else."""
    try:
        text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"could not read the input Stash sends on stdin ({exc})") from None
    if not text.strip():
        raise InputError("no input on stdin: Stash2Plex must be run by Stash (it sends JSON on stdin)")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"stdin is not valid JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise InputError("stdin JSON must be an object with 'server_connection' and 'args'")
    conn = data.get("server_connection")
    args = data.get("args")
    if conn is None:
        conn = {}
    if args is None:
        args = {}
    if not isinstance(conn, dict) or not isinstance(args, dict):
        raise InputError("'server_connection' and 'args' in the stdin JSON must be objects")
    return PluginInput(server_connection=conn, args=args)


@dataclass
class StashLog:
    """Writes Stash's log protocol to a stream, with secrets masked on every line.

    Debug lines are dropped unless `debug` is on: Stash shows plugin debug lines only at its
    own debug level, but a busy library would still flood the log file otherwise.
    """

    stream: IO[str] = field(default_factory=lambda: sys.stderr)
    debug_enabled: bool = False
    _secrets: list[str] = field(default_factory=list)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if secret and len(secret) >= 4 and secret not in self._secrets:
                self._secrets.append(secret)
        self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _URL_SECRETS.sub(r"\1***", text)

    def trace(self, msg: str) -> None:
        self._emit("trace", msg)

    def debug(self, msg: str) -> None:
        if self.debug_enabled:
            self._emit("debug", msg)

    def info(self, msg: str) -> None:
        self._emit("info", msg)

    def warning(self, msg: str) -> None:
        self._emit("warning", msg)

    def error(self, msg: str) -> None:
        self._emit("error", msg)

    def progress(self, fraction: float) -> None:
        """Report task progress in 0..1 (Stash drops it for hooks, harmlessly)."""
        value = min(1.0, max(0.0, float(fraction)))
        self._write(f"\x01p\x02{value:.4f}\n")

    def _emit(self, level: str, msg: str) -> None:
        char = _LEVELS[level]
        lines = log_lines(self.redact(str(msg)))
        self._write("".join(f"\x01{char}\x02{line[:MAX_LINE]}\n" for line in lines))

    def _write(self, text: str) -> None:
        if not text:
            return
        try:
            self.stream.write(_LONE_SURROGATE.sub("\ufffd", text))
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            # Stash closed its end (the plugin was cancelled): losing a log line is fine,
            # crashing the job we are in the middle of is not.
            pass


def log_lines(text: str) -> list[str]:
    """The non-blank lines of a message as Stash reads them: split at newlines only.

    Not `str.splitlines`, which also splits at \\x1c-\\x1e, \\x85 and U+2028: a scene title
    or hook type holding one of those would turn one error into two lines in Stash's log.
    """
    return [line for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line.strip()]


def write_result(output: Any = None, error: str | None = None, *, log: StashLog | None = None,
                 stream: IO[str] | None = None) -> None:
    """Print the one JSON object Stash parses from stdout, secrets masked."""
    text = json.dumps({"output": output, "error": error}, ensure_ascii=False, default=str)
    if log is not None:
        text = log.redact(text)
    out = stream or sys.stdout
    try:
        out.write(_LONE_SURROGATE.sub("\ufffd", text) + "\n")
        out.flush()
    except (BrokenPipeError, ValueError, OSError):
        pass
