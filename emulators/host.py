"""A Stash plugin host: runs the plugin exactly the way Stash's raw plugin runner does.

What it reproduces (shared reference §1.2-§1.5, §1.9): the manifest is parsed strictly (an
unknown top-level key fails the load); the plugin id is the manifest's file name; `python`
in `exec` is replaced by the configured interpreter and `{pluginDir}` substituted in the
arguments; the working directory is not the plugin folder; `PYTHONPATH` gets the plugins
root appended; the stdin JSON carries Go's field names and a session cookie; stderr is
parsed line by line with level prefixes (unprefixed lines at the `errLog` level, progress
only for tasks); stdout is read to EOF before waiting; a hook runs synchronously; cancel is
SIGKILL of the direct child only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MANIFEST_KEYS = {"name", "description", "url", "version", "interface", "exec", "errLog",
                 "tasks", "hooks", "ui", "settings"}
LEVEL_CHARS = {"t": "trace", "d": "debug", "i": "info", "w": "warning", "e": "error", "p": "progress"}
SETTING_TYPES = {"STRING", "NUMBER", "BOOLEAN"}


class ManifestError(Exception):
    """Stash would refuse to load this plugin ("Error loading plugin")."""


def load_manifest(path: Path) -> dict[str, Any]:
    """Parse a plugin manifest as strictly as Stash's yaml.v2 `SetStrict(true)` does."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ManifestError(f"{path.name}: not a YAML mapping")
    unknown = set(data) - MANIFEST_KEYS
    if unknown:
        raise ManifestError(f"{path.name}: unknown top-level keys {sorted(unknown)}")
    interface = data.get("interface") or "raw"
    if interface not in ("raw", "rpc", "js"):
        raise ManifestError(f"{path.name}: invalid interface {interface!r}")
    for name, spec in (data.get("settings") or {}).items():
        if (spec or {}).get("type", "STRING") not in SETTING_TYPES:
            raise ManifestError(f"{path.name}: setting {name} has invalid type {spec.get('type')!r}")
    for task in data.get("tasks") or []:
        for key, value in (task.get("defaultArgs") or {}).items():
            if not isinstance(value, str):
                raise ManifestError(f"{path.name}: task {task.get('name')} defaultArgs.{key} is not a string")
    return data


@dataclass
class RunResult:
    """What Stash would see and log for one plugin run."""

    output: Any
    error: str | None
    logs: list[tuple[str, str]]
    progress: list[float]
    wall_time: float
    returncode: int | None
    stdout: str
    stderr: str
    killed: bool = False

    def lines(self, level: str | None = None) -> list[str]:
        return [msg for lvl, msg in self.logs if level is None or lvl == level]


def parse_stderr(text: str, err_level: str, is_task: bool) -> tuple[list[tuple[str, str]], list[float]]:
    """Split stderr the way `pkg/logger/plugin.go` does: prefix, level char, trimmed message."""
    logs: list[tuple[str, str]] = []
    progress: list[float] = []
    for raw in text.split("\n"):  # bufio.ScanLines: "\n" only, a trailing "\r" dropped
        raw = raw.removesuffix("\r")
        if not raw.strip():
            continue
        if len(raw) >= 4 and raw[0] == "\x01" and raw[2] == "\x02" and raw[1] in LEVEL_CHARS:
            level, message = LEVEL_CHARS[raw[1]], raw[3:].strip()
            if level == "progress":
                if is_task:
                    try:
                        progress.append(float(message))
                    except ValueError:
                        logs.append(("error", f"Error parsing progress value: {message}"))
                continue
            logs.append((level, message))
        else:
            logs.append((err_level, raw.strip()))
    return logs, progress


def parse_stdout(text: str, returncode: int | None) -> tuple[Any, str | None]:
    """`rawPluginTask.getOutput`: JSON `{output, error}`, else the whole text as output."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError
        output, error = data.get("output"), data.get("error")
    except ValueError:
        output, error = (text if text else None), None
    if returncode and not error:
        error = f"exit status {returncode}"
    return output, error


@dataclass
class StashHost:
    """Runs one installed plugin as Stash would.

    `connection` holds Scheme/Host/Port of the (emulated) Stash; `cookie_factory` mints the
    session cookie Stash would hand the plugin (None means no cookie, as when Stash failed to
    make one).
    """

    plugin_dir: Path
    connection: dict[str, Any]
    stash_dir: Path
    cookie_factory: Callable[[], dict[str, Any] | None] | None = None
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    on_result: Callable[[RunResult], None] | None = None

    def __post_init__(self) -> None:
        self.manifest_path = next(self.plugin_dir.glob("*.yml"))
        self.plugin_id = self.manifest_path.stem
        self.manifest = load_manifest(self.manifest_path)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="stash-cwd-"))

    # --- input ------------------------------------------------------------------------

    def build_input(self, args: dict[str, Any]) -> dict[str, Any]:
        cookie = self.cookie_factory() if self.cookie_factory else None
        conn = {
            "Scheme": self.connection.get("Scheme", "http"),
            "Host": self.connection.get("Host", "0.0.0.0"),
            "Port": self.connection["Port"],
            "SessionCookie": cookie,
            "Dir": str(self.stash_dir),
            "PluginDir": str(self.plugin_dir),
        }
        return {"server_connection": conn, "args": args}

    def command(self, operation: dict[str, Any]) -> list[str]:
        exec_line = list(self.manifest["exec"]) + list(operation.get("execArgs") or [])
        program = exec_line[0]
        if program in ("python", "python3"):
            program = self.python
        elif not os.path.isabs(program) and not _on_path(program):
            program = str(self.plugin_dir / program)
        rest = [arg.replace("{pluginDir}", str(self.plugin_dir)) for arg in exec_line[1:]]
        return [program, *rest]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        root = str(self.plugin_dir.parent)
        env["PYTHONPATH"] = f"{env['PYTHONPATH']}{os.pathsep}{root}" if env.get("PYTHONPATH") else root
        return env

    # --- running ------------------------------------------------------------------------

    def task(self, name_or_mode: str) -> dict[str, Any]:
        for task in self.manifest.get("tasks") or []:
            if name_or_mode in (task["name"], (task.get("defaultArgs") or {}).get("mode")):
                return task
        raise KeyError(f"no task {name_or_mode!r} in {self.manifest_path.name}")

    def run_task(self, name_or_mode: str, args: dict[str, Any] | None = None,
                 cancel_after: float | None = None, stdin_text: str | None = None) -> RunResult:
        """Run a task; `args` given by the caller win over `defaultArgs` (applyDefaultArgs)."""
        task = self.task(name_or_mode)
        merged = dict(task.get("defaultArgs") or {})
        merged.update(args or {})
        payload = stdin_text if stdin_text is not None else json.dumps(self.build_input(merged))
        return self._run(task, payload, is_task=True, cancel_after=cancel_after)

    def run_raw(self, stdin: dict[str, Any] | str, is_task: bool = True) -> RunResult:
        """Feed the plugin an arbitrary stdin (malformed input, unknown modes and hooks)."""
        text = stdin if isinstance(stdin, str) else json.dumps(stdin)
        operation = {"name": "raw", "execArgs": []}
        return self._run(operation, text, is_task=is_task)

    def hooks_for(self, trigger: str) -> list[dict[str, Any]]:
        return [h for h in self.manifest.get("hooks") or [] if trigger in (h.get("triggeredBy") or [])]

    def run_hook(self, trigger: str, object_id: int | None, hook_input: Any = None,
                 input_fields: list[str] | None = None) -> list[RunResult]:
        """Run every hook triggered by `trigger`, one after another, as `executePostHooks` does."""
        results = []
        for hook in self.hooks_for(trigger):
            context: dict[str, Any] = {"type": trigger, "input": hook_input}
            if object_id:
                context["id"] = object_id
            if input_fields:
                context["inputFields"] = input_fields
            args = dict(hook.get("defaultArgs") or {})
            args["hookContext"] = context
            results.append(self._run(hook, json.dumps(self.build_input(args)), is_task=False))
        return results

    def _run(self, operation: dict[str, Any], stdin_text: str, is_task: bool,
             cancel_after: float | None = None) -> RunResult:
        started = time.perf_counter()
        proc = subprocess.Popen(
            self.command(operation), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=str(self.workdir), env=self.environment(),
        )
        err_chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
        reader.start()
        killed = threading.Event()
        timer = None
        if cancel_after is not None:
            def cancel() -> None:
                killed.set()
                proc.kill()  # SIGKILL of the direct child only, no signal first

            timer = threading.Timer(cancel_after, cancel)
            timer.start()
        try:
            proc.stdin.write(stdin_text.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        out = proc.stdout.read()  # to EOF, like io.ReadAll
        returncode = proc.wait()
        if timer is not None:
            timer.cancel()
        reader.join(timeout=5)
        wall = time.perf_counter() - started
        stderr = b"".join(err_chunks).decode("utf-8", "replace")
        stdout = out.decode("utf-8", "replace")
        logs, progress = parse_stderr(stderr, self.manifest.get("errLog") or "error", is_task)
        output, error = parse_stdout(stdout, returncode)
        result = RunResult(output, error, logs, progress, wall, returncode, stdout, stderr, killed.is_set())
        if self.on_result is not None:
            self.on_result(result)
        return result


def _on_path(program: str) -> bool:
    from shutil import which

    return which(program) is not None
