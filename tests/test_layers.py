"""The layer order in docs/DESIGN.md, enforced: who may import whom, read from the source.

Every import statement of every runtime module counts, wherever it stands: at module level,
inside a function (a lazy import still runs), under `TYPE_CHECKING` (a type is still a
dependency). A package may import only packages on a lower level of the table; since no two
packages on one level may import each other either, the package graph has no cycle.

Two properties the layers exist for are checked here too: the hook's path loads no network
client library, and the runtime never imports the emulators it is tested against.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from release import build as rb

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "Stash2Plex"
#: Libraries a Stash save must not wait for: the hook records an event and returns.
NETWORK_LIBRARIES = {"plexapi", "stashapi", "requests", "urllib3", "tenacity", "persistqueue"}
#: What `Stash2Plex.run` imports on its hook branch, beside the entry's module-level imports.
HOOK_BRANCH = ("plugin.dispatch", "plugin.hooks", "plugin.upgrade_note", "base.datadir")
_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`([\w.]+?)/?`\s*\|")


def layer_table(text: str) -> dict[str, int]:
    """Package (or the entry script) -> level, from the Layers table of docs/DESIGN.md."""
    levels: dict[str, int] = {}
    for line in text.splitlines():
        found = _ROW.match(line)
        if found:
            name = found.group(2).removesuffix(".py")
            levels[name] = int(found.group(1))
    return levels


LEVELS = layer_table((ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_modules() -> dict[str, Path]:
    modules = {ENTRY: ROOT / f"{ENTRY}.py"}
    for package in rb.PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


MODULES = runtime_modules()


def module_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = [alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names]
    return names + [node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module]


def hook_roots() -> list[str]:
    return [*module_level_imports(MODULES[ENTRY]), *HOOK_BRANCH]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every absolute import in the file, lazy ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import; write it absolute so this check sees it"
            found.append((node.lineno, node.module))
            # `from pkg import module` imports the module too
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                         if f"{node.module}.{alias.name}" in MODULES)
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def upward_imports(modules: dict[str, Path], levels: dict[str, int]) -> list[str]:
    bad = []
    for name, path in modules.items():
        here = top(name)
        for line, target in imports(path):
            there = top(target)
            if there == here or there not in levels:
                continue
            if levels[there] >= levels[here]:
                bad.append(f"{name}:{line} ({here}, level {levels[here]}) imports "
                           f"{target} (level {levels[there]})")
    return bad


def closure(roots: Iterable[str]) -> dict[str, str]:
    """Every module reachable from `roots` through any import, mapped to who imported it first;
    importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` too."""
    seen: dict[str, str] = {}
    pending = [(root, "") for root in roots]
    while pending:
        name, parent = pending.pop()
        if name in seen:
            continue
        seen[name] = parent
        parts = name.split(".")
        pending.extend((".".join(parts[:i]), name) for i in range(1, len(parts)))
        if name in MODULES:
            pending.extend((target, name) for _, target in imports(MODULES[name]))
    return seen


def test_the_table_names_every_runtime_package_and_the_entry() -> None:
    assert set(LEVELS) == {*rb.PACKAGES, ENTRY}
    assert len(MODULES) > 40


def test_no_package_imports_its_own_level_or_above() -> None:
    assert upward_imports(MODULES, LEVELS) == []


def test_the_check_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from worker.core import Services\n"
              "def f():\n    from tasks.queue import process_queue\n")
    (tmp_path / "m.py").write_text(source, encoding="utf-8")
    found = {name for _, name in imports(tmp_path / "m.py")}
    assert {"worker.core", "tasks.queue"} <= found


def test_the_check_finds_an_upward_import(tmp_path: Path) -> None:
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from worker.core import drain\n", encoding="utf-8")
    bad = upward_imports({"plex.x": path}, LEVELS)
    assert len(bad) == 1 and "worker.core" in bad[0], bad


def test_no_module_of_a_package_imports_a_package_beside_it() -> None:
    """Same level means independent: `sync_queue` and `stash` know nothing of each other."""
    same = [(a, b) for a in LEVELS for b in LEVELS if a != b and LEVELS[a] == LEVELS[b]]
    crossing = [f"{name} -> {target}" for name, path in MODULES.items() for _, target in imports(path)
                for a, b in same if top(name) == a and top(target) == b]
    assert crossing == []


@pytest.mark.parametrize("library", sorted(NETWORK_LIBRARIES))
def test_the_hook_path_loads_no_client_library(library: str) -> None:
    reached = closure(hook_roots())
    chain = []
    if library in reached:
        step = library
        while step:
            chain.append(step)
            step = reached[step]
    assert library not in reached, " <- ".join(chain)


def test_the_hook_path_reaches_what_it_must() -> None:
    reached = closure(hook_roots())
    assert {"sync_queue.inbox", "worker.launch", "base.errors", "base.protocol"} <= set(reached)


def test_the_runtime_never_imports_the_emulators() -> None:
    used = [f"{name} -> {target}" for name, path in MODULES.items() for _, target in imports(path)
            if top(target) in ("emulators", "tests", "bench")]
    assert used == []
