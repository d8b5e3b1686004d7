"""Turn a missing third-party package into one line that says exactly what to run.

Stash runs us with whatever Python it is configured with, which often lacks plexapi or
persist-queue; a traceback in Stash's log helps nobody.
"""

from __future__ import annotations

import sys
from pathlib import Path

from plugin.errors import Stash2PlexError

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


def missing_dependency(exc: ModuleNotFoundError, plugin_dir: Path) -> MissingDependency | None:
    """The one-line error for a missing runtime package, or None if `exc` is about our own code."""
    top = (exc.name or "").split(".")[0]
    if top not in RUNTIME_PACKAGES:
        return None
    requirements = plugin_dir / "requirements.txt"
    return MissingDependency(
        f"Stash2Plex needs the Python package '{RUNTIME_PACKAGES[top]}', which {sys.executable} "
        f"cannot import. Install the plugin's requirements with: "
        f'"{sys.executable}" -m pip install -r "{requirements}"'
    )
