"""Where Stash2Plex keeps its state.

The state (queue, ledger, dead letters, breaker, logs) must outlive a plugin upgrade, which
deletes the plugin's files, and should outlive an uninstall too, so it lives beside Stash's
own config by default rather than inside the plugin folder. Standard library only: the hook
path calls this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_OVERRIDE = "STASH2PLEX_DATA_DIR"
DB_FILE = "stash2plex.db"


def data_dir(server_connection: Mapping[str, Any], create: bool = True) -> Path:
    """The data folder: `$STASH2PLEX_DATA_DIR`, else `<Stash config dir>/plugin_data/Stash2Plex`,
    else `<plugin dir>/data`, else next to this file."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        path = Path(override)
    elif server_connection.get("Dir"):
        path = Path(str(server_connection["Dir"])) / "plugin_data" / "Stash2Plex"
    elif server_connection.get("PluginDir"):
        path = Path(str(server_connection["PluginDir"])) / "data"
    else:
        path = Path(__file__).resolve().parent.parent / "data"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def plugin_dir(server_connection: Mapping[str, Any]) -> Path:
    """The folder holding Stash2Plex.py, whatever Stash's working directory is."""
    given = server_connection.get("PluginDir")
    return Path(str(given)) if given else Path(__file__).resolve().parent.parent
