"""Notes that tell a user where Stash2Plex's state is, written before anyone needs them.

Stash upgrades and uninstalls a plugin by deleting the files its zip listed; the plugin runs
no code at that moment. So the explanation has to be on disk beforehand, in two places:

* ``<data dir>/README.txt``: someone who finds ``plugin_data/Stash2Plex`` learns what it is,
  that it is kept on purpose, and how to remove it.
* ``<plugin dir>/DATA_LOCATION.txt``: not part of the zip, so an uninstall leaves it behind
  in the plugin's folder (the folder the user looks in) and points at the data.

Standard library only and cheap when the notes exist (one ``stat`` each), so any run may call
it; every write error is swallowed because a note must never fail a sync.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_NOTE = "README.txt"
PLUGIN_NOTE = "DATA_LOCATION.txt"
#: The file Stash's package manager writes into every folder it installs (pkg.ManifestFile).
STASH_MANIFEST = "manifest"
#: Bump when the wording changes so existing notes are rewritten once.
NOTE_VERSION = 1
_MARK = f"(stash2plex-note v{NOTE_VERSION})"


def data_note_text(data_dir: Path) -> str:
    return (
        "Stash2Plex data folder " + _MARK + "\n"
        "\n"
        f"This folder ({data_dir}) holds the state of the Stash2Plex plugin:\n"
        "  stash2plex.db      the queue of scenes waiting to be synced to Plex, the dead-letter\n"
        "                     list, and the sync ledger (what was last written to Plex)\n"
        "  *.log, *.lock      the background worker's log and lock files\n"
        "\n"
        "It is kept outside the plugin's own folder on purpose: upgrading Stash2Plex from\n"
        "Stash's plugin page replaces the plugin's files but never touches this folder, so\n"
        "pending syncs and the history survive. Uninstalling the plugin leaves it here too.\n"
        "\n"
        "To remove Stash2Plex completely, uninstall it in Stash, then delete this folder.\n"
        "Deleting it while the plugin is installed forgets every pending sync and makes the\n"
        "next full sync rewrite every scene in Plex.\n"
        "\n"
        "Set the environment variable STASH2PLEX_DATA_DIR (for Stash's process) to keep the\n"
        "data elsewhere.\n"
    )


def plugin_note_text(data_dir: Path) -> str:
    return (
        "Stash2Plex " + _MARK + "\n"
        "\n"
        "Stash2Plex keeps its queue, dead letters and sync history in:\n"
        f"  {data_dir}\n"
        "\n"
        "That folder survives upgrades and uninstalling the plugin. If you uninstalled\n"
        "Stash2Plex and want its data gone too, delete that folder and then this one.\n"
    )


def _write_if_stale(path: Path, text: str) -> bool:
    try:
        if path.is_file() and _MARK in path.read_text(encoding="utf-8", errors="replace")[:200]:
            return False
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return True
    except OSError:
        return False


def ensure_notes(data_dir: Path, plugin_dir: Path | None) -> list[Path]:
    """Write the notes that are missing or outdated; return the ones written.

    The plugin note is written only into a folder Stash's package manager installed (it
    holds Stash's ``manifest`` file): that is where an uninstall leaves the user wondering,
    and a git checkout or a hand-copied folder stays untouched. It is also skipped when the
    data lives inside the plugin folder (the fallback when Stash gives no config dir): there
    the data README says it all.
    """
    data_dir = Path(data_dir)
    written = []
    if data_dir.is_dir() and _write_if_stale(data_dir / DATA_NOTE, data_note_text(data_dir)):
        written.append(data_dir / DATA_NOTE)
    if plugin_dir is not None:
        plugin_dir = Path(plugin_dir)
        inside = plugin_dir.resolve() in data_dir.resolve().parents or plugin_dir.resolve() == data_dir.resolve()
        managed = (plugin_dir / STASH_MANIFEST).is_file()
        if managed and not inside and _write_if_stale(plugin_dir / PLUGIN_NOTE, plugin_note_text(data_dir)):
            written.append(plugin_dir / PLUGIN_NOTE)
    return written
