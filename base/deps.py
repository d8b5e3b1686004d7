"""Turn a missing third-party package into one line that says exactly what to run.

Stash runs us with whatever Python it is configured with. A release zip ships the packages
Stash's Docker image lacks in ``vendor/``; a git checkout, or a Python without ``requests`` or
``stashapp-tools``, may still miss some, and a traceback in Stash's log helps nobody.

The command we print installs into the plugin's own ``vendor/`` folder (which the entrypoint
puts on ``sys.path``) rather than into the interpreter: ``pip install --target`` needs no
root, works in Alpine-based images whose Python refuses system installs (PEP 668,
"externally-managed-environment"), and uses no git. It names every missing package at once,
with the version range requirements.txt pins, so one run fixes it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path

from base.errors import Stash2PlexError

#: import name -> PyPI name, for every runtime dependency in requirements.txt.
RUNTIME_PACKAGES = {
    "persistqueue": "persist-queue",
    "plexapi": "plexapi",
    "stashapi": "stashapp-tools",
    "tenacity": "tenacity",
    "requests": "requests",
    "filelock": "filelock",
}


class MissingDependency(Stash2PlexError):
    """A runtime package is not importable by the Python Stash runs us with."""


def requirement_specs(requirements_text: str) -> dict[str, str]:
    """PyPI name (lower case) -> its requirement line, from requirements.txt's text."""
    specs: dict[str, str] = {}
    for raw in requirements_text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match:
            specs[match.group(1).lower()] = line.replace(" ", "")
    return specs


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_packages(first: str, importable: Callable[[str], bool] = _importable) -> list[str]:
    """PyPI names of every runtime package that cannot be imported, `first` (an import name) first."""
    names = [first] + [n for n in RUNTIME_PACKAGES if n != first]
    return [RUNTIME_PACKAGES[n] for n in names if n in RUNTIME_PACKAGES and (n == first or not importable(n))]


def install_command(python: str, plugin_dir: Path, packages: list[str], specs: dict[str, str]) -> str:
    """The pip command that puts `packages` into the plugin's own vendor/ folder."""
    wanted = " ".join(f'"{specs.get(p.lower(), p)}"' for p in packages)
    return f'"{python}" -m pip install --target "{plugin_dir / "vendor"}" {wanted}'


def missing_dependency(exc: ModuleNotFoundError, plugin_dir: Path,
                       importable: Callable[[str], bool] = _importable) -> MissingDependency | None:
    """The one-line error for a missing runtime package, or None if `exc` is about our own code."""
    top = (exc.name or "").split(".")[0]
    if top not in RUNTIME_PACKAGES:
        return None
    try:
        specs = requirement_specs((plugin_dir / "requirements.txt").read_text(encoding="utf-8"))
    except OSError:
        specs = {}
    packages = missing_packages(top, importable)
    needs = ", ".join(f"'{p}'" for p in packages)
    plural = "s" if len(packages) > 1 else ""
    return MissingDependency(
        f"Stash2Plex needs the Python package{plural} {needs}, which {sys.executable} cannot import. "
        f"Install into the plugin's own folder (no root, no git needed) with: "
        f"{install_command(sys.executable, plugin_dir, packages, specs)}"
    )
