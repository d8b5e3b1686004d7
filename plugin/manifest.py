"""Render the manifest's `settings`, `tasks` and `hooks` from the code's tables.

`python -m plugin.manifest` prints the YAML blocks; `Stash2Plex.yml` holds them, and a test
fails when the file and the code disagree, so the schema in code stays the one source.
"""

from __future__ import annotations

import json

from base.settings import SCHEMA
from plugin.dispatch import HOOKS, TASKS

TASK_DESCRIPTIONS = {
    "all": "Queue every scene that differs from what was last written to Plex, then sync them.",
    "recent": "Like Sync All, for scenes created or updated in the last 24 hours.",
    "process_queue": "Sync every queued scene that is due now and report what is still deferred.",
    "queue_status": "Show pending, deferred and dead-lettered scenes, grouped by reason.",
    "clear_queue": "Drop every pending job (the sync history is kept).",
    "clear_dlq": "Drop every dead-lettered scene.",
    "purge_dlq": "Drop dead-lettered scenes older than 30 days.",
    "retry_dlq": "Queue every dead-lettered scene again with fresh attempts.",
    "reconcile_all": "Find scenes that are missing, stale or empty in Plex and queue only those.",
    "reconcile_recent": "Reconcile scenes changed in the last 24 hours.",
    "reconcile_7days": "Reconcile scenes changed in the last 7 days.",
    "health_check": "Check the settings, Stash, Plex, the libraries and the queue, and say what is wrong.",
    "dry_run": "Show field by field what a sync would change in Plex, without writing.",
    "import_watch_history": "Copy plays and resume points watched in Plex into Stash, each play once "
                            "(setting 'Import Plex watch history').",
    "watch_history_dry_run": "List the plays and resume points the import would copy from Plex, without writing.",
}


#: The manifest's hook entries: scene events, then the performer/studio/tag/group events that
#: fan out to every scene showing the entity. Every trigger of `HOOKS` is in exactly one.
HOOK_BLOCKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Sync scene to Plex",
     "Queue the scene for syncing to Plex when it is created or updated; forget it when it is deleted.",
     tuple(t for t in HOOKS if t.startswith("Scene."))),
    ("Sync scenes of a performer, studio, tag or group",
     "Queue every scene that shows a performer, studio, tag or group when it is renamed, merged or deleted, "
     "and update the group's collection.",
     tuple(t for t in HOOKS if not t.startswith("Scene."))),
)


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def render() -> str:
    """The YAML text of the generated blocks, in the manifest's order."""
    lines = ["hooks:"]
    for name, description, triggers in HOOK_BLOCKS:
        lines += [f"  - name: {name}", f"    description: {description}", "    triggeredBy:"]
        lines += [f"      - {trigger}" for trigger in triggers]
    lines.append("tasks:")
    for mode, (title, _target) in TASKS.items():
        lines += [
            f"  - name: {_q(title)}",
            f"    description: {_q(TASK_DESCRIPTIONS[mode])}",
            "    defaultArgs:",
            f"      mode: {mode}",
        ]
    lines.append("settings:")
    for spec in SCHEMA:
        lines += [
            f"  {spec.name}:",
            f"    displayName: {_q(spec.display_name)}",
            f"    description: {_q(spec.description)}",
            f"    type: {spec.type}",
        ]
    return "\n".join(lines) + "\n"


def _default_text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"`{value}`" if value != "" else "(empty)"


def render_settings_table() -> str:
    """The README's settings table, one row per setting in schema order."""
    rows = ["| setting | type | default | what it does |", "|---|---|---|---|"]
    for spec in SCHEMA:
        required = " **Required.**" if spec.required else ""
        rows.append(f"| `{spec.name}` | {spec.type} | {_default_text(spec.default)} | "
                    f"{spec.description}{required} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    print(render_settings_table() if "--readme" in sys.argv else render(), end="")
