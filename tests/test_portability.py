"""Stash runs on Linux, macOS and Windows: no platform-only import at module level (issue 2
point 9). A platform module may be imported inside a function behind an `os.name` check,
where only the platform that has it reaches it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ["base", "sync_queue", "stash", "plex", "reconciliation", "watch", "worker", "tasks", "plugin"]
PLATFORM_ONLY = {
    # POSIX only
    "fcntl", "pwd", "grp", "resource", "termios", "tty", "pty", "posix", "syslog", "crypt", "spwd",
    "readline", "curses",
    # Windows only
    "msvcrt", "winreg", "_winapi", "winsound", "nt",
}


def runtime_files() -> list[Path]:
    files = [ROOT / "Stash2Plex.py"]
    for package in RUNTIME:
        files.extend(sorted((ROOT / package).rglob("*.py")))
    return files


def module_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Imports executed when the module loads: top level, and inside top-level try/if/with."""
    found: list[tuple[int, str]] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    pending.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def test_the_runtime_has_modules_to_check() -> None:
    assert len(runtime_files()) > 30


@pytest.mark.parametrize("path", runtime_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_platform_only_import_at_module_level(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = [(line, name) for line, name in module_level_imports(tree) if name in PLATFORM_ONLY]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad} when it loads; import it inside the function that needs it"


def test_the_check_sees_a_module_level_import() -> None:
    tree = ast.parse("import os\ntry:\n    import fcntl\nexcept ImportError:\n    pass\n"
                     "def f():\n    import msvcrt\n")
    names = [name for _, name in module_level_imports(tree)]
    assert "fcntl" in names and "msvcrt" not in names
