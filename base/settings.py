"""The one settings schema: what the manifest declares, what Stash sends, what code reads.

Stash stores only the settings a user has saved and sends nothing for the others, so every
setting has a default here. A bad value of an optional setting must never disable the
plugin: it falls back to its default with one warning. A missing required value is an
error that names the setting and where to set it, raised only when a caller actually needs
it (the hook path never does).

The manifest `Stash2Plex.yml` is checked against `SCHEMA` by a test, so the two cannot
drift.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from base.errors import SettingsError

PLUGIN_ID = "Stash2Plex"
WHERE_TO_SET = "Stash → Settings → Plugins → Stash2Plex"

SettingType = Literal["STRING", "NUMBER", "BOOLEAN"]

RECONCILE_INTERVALS = {"never": None, "hourly": 3600.0, "daily": 86400.0, "weekly": 604800.0}

#: The Plex fields each toggle controls, in the order they are applied.
FIELD_TOGGLES: tuple[str, ...] = (
    "sync_title",
    "sync_studio",
    "sync_summary",
    "sync_tagline",
    "sync_date",
    "sync_performers",
    "sync_tags",
    "sync_poster",
    "sync_background",
    "sync_collection",
)


@dataclass(frozen=True)
class Setting:
    """One declared setting; `minimum`/`maximum`/`choices` bound what is accepted."""

    name: str
    type: SettingType
    default: Any
    display_name: str
    description: str
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    secret: bool = False
    keep_spaces: bool = False  # a prefix's trailing space is part of it


def _toggle(name: str, what: str) -> Setting:
    return Setting(name, "BOOLEAN", True, f"Sync {what}", f"Write {what} to Plex.")


SCHEMA: tuple[Setting, ...] = (
    Setting("plex_url", "STRING", "", "Plex URL",
            "Address of your Plex server as this Stash sees it, e.g. http://192.168.1.10:32400 "
            "or http://plex:32400 between Docker containers.", required=True),
    Setting("plex_token", "STRING", "", "Plex token",
            "Your X-Plex-Token. Never logged.", required=True, secret=True),
    Setting("plex_verify_certificate", "BOOLEAN", True, "Verify Plex certificate",
            "For an https:// Plex URL: check that Plex's certificate is valid for that address. "
            "Turn off only for a Plex on your own network; each run logs a warning while it is off."),
    Setting("plex_ca_file", "STRING", "", "Plex CA file",
            "For an https:// Plex URL with a certificate your system does not trust (self-signed, "
            "or your own CA): path to a PEM file with that CA or certificate, as the machine "
            "running Stash sees it. Used instead of the system's CA list."),
    Setting("plex_library", "STRING", "", "Plex libraries",
            "Comma-separated names of the Plex movie libraries that hold your Stash files. "
            "Empty: every movie library."),
    Setting("path_map", "STRING", "", "Path mapping",
            "How Stash paths become Plex paths when the two see the files under different "
            "folders: STASH_PREFIX=>PLEX_PREFIX; another=>pair. Example: /data=>/media"),
    Setting("enabled", "BOOLEAN", True, "Enabled",
            "Master switch. When off, scene changes are still recorded but nothing is sent to Plex."),
    Setting("max_retries", "NUMBER", 5, "Max retries",
            "Attempts before a failing scene moves to the dead-letter list (1-50). "
            "A Plex outage does not use attempts.", minimum=1, maximum=50),
    Setting("strict_matching", "BOOLEAN", True, "Strict matching",
            "When no file path matches exactly and several Plex items share the file name, "
            "move the scene to the dead-letter list with its candidates instead of waiting "
            "for a Plex scan to resolve it."),
    Setting("preserve_plex_edits", "BOOLEAN", False, "Preserve Plex edits",
            "Keep a value someone changed in Plex since our last write, instead of "
            "overwriting it with Stash's."),
    Setting("lock_synced_fields", "BOOLEAN", True, "Lock synced fields",
            "Lock every field we write so a Plex metadata refresh does not revert it."),
    Setting("overwrite_user_locks", "BOOLEAN", False, "Overwrite fields locked in Plex",
            "Write fields someone locked by hand in Plex too (their lock stays). Off: a lock "
            "Stash2Plex did not set is a person's decision and the field is left alone."),
    Setting("connect_timeout", "NUMBER", 5, "Connect timeout (s)",
            "Seconds to wait for a connection to Plex (1-120).", minimum=1, maximum=120),
    Setting("read_timeout", "NUMBER", 30, "Read timeout (s)",
            "Seconds to wait for Plex to answer a request (1-600).", minimum=1, maximum=600),
    Setting("trigger_plex_scan", "BOOLEAN", True, "Ask Plex to scan new files",
            "When Stash adds a scene Plex does not know yet, ask Plex to scan just that "
            "file's folder (once per folder per burst)."),
    Setting("skip_not_found", "BOOLEAN", False, "Skip scenes missing in Plex",
            "When a scene's file is still not in Plex after all retries, drop the job quietly "
            "instead of listing it in the dead-letter list."),
    Setting("reconcile_interval", "STRING", "never", "Auto-reconcile",
            "How often the background worker looks for gaps between Stash and Plex: "
            "never, hourly, daily or weekly.", choices=tuple(RECONCILE_INTERVALS)),
    Setting("max_tags", "NUMBER", 100, "Max tags",
            "At most this many Stash tags become Plex genres per scene (0 = no limit).",
            minimum=0, maximum=10000),
    Setting("max_request_rate", "NUMBER", 0, "Max Plex requests per second",
            "Upper bound on requests per second sent to Plex (0 = no limit).",
            minimum=0, maximum=1000),
    Setting("import_watch_history", "BOOLEAN", False, "Import Plex watch history",
            "Copy plays and resume points from Plex into Stash (play count, last played, resume), "
            "each play once, never any metadata: with the Import Plex Watch History task, and in "
            "the background on the Auto-reconcile interval."),
    Setting("watch_history_account", "STRING", "", "Watch history account",
            "Whose Plex plays are imported: empty for the Plex token's own account (plays and "
            "resume points), a managed user's name, or 'all' for every account (plays only)."),
    Setting("debug_logging", "BOOLEAN", False, "Debug logging",
            "Log each decision at debug level in Stash's log and the worker log."),
    Setting("sync_master", "BOOLEAN", True, "Sync metadata",
            "When off, no field is written to Plex whatever the toggles below say."),
    _toggle("sync_title", "the title and sort title"),
    _toggle("sync_studio", "the studio"),
    _toggle("sync_summary", "the details as Plex summary"),
    _toggle("sync_tagline", "the studio code as Plex tagline"),
    _toggle("sync_date", "the date"),
    _toggle("sync_performers", "performers as Plex actors"),
    _toggle("sync_tags", "tags as Plex genres"),
    _toggle("sync_poster", "the cover as Plex poster"),
    _toggle("sync_background", "a still image as Plex background"),
    _toggle("sync_collection", "collections (the studio's, and the groups and networks below)"),
    Setting("sync_group_collections", "BOOLEAN", True, "Sync groups as collections",
            "With Sync collections on: one Plex collection per Stash group (series, compilation, release) a scene is in, with the "
            "group's front image as poster, its synopsis as summary and its scenes in scene number order."),
    Setting("sync_network_collections", "BOOLEAN", False, "Sync studio networks as collections",
            "With Sync collections on: also put each scene in a collection for every parent studio (network) of its studio."),
    Setting("sync_collection_posters", "BOOLEAN", True, "Sync collection posters",
            "With Sync collections on: the group's front image and the studio's image as their collections' "
            "posters (without one, Plex shows a mosaic of the items' posters). Apart from Sync poster, "
            "which is each scene's own cover."),
    Setting("collection_prefix", "STRING", "", "Collection prefix",
            "Text put in front of the name of every collection Stash2Plex manages (studio, network, "
            "group), e.g. 'Stash: ', so they sort together in Plex. Changing it renames nothing: "
            "scenes move to the new names and the emptied collections are deleted.", keep_spaces=True),
)

SCHEMA_BY_NAME: dict[str, Setting] = {s.name: s for s in SCHEMA}


@dataclass(frozen=True)
class Settings:
    """Typed, validated values; built only by `load_settings`."""

    plex_url: str
    plex_token: str
    plex_verify_certificate: bool
    plex_ca_file: str
    plex_library: tuple[str, ...]
    path_map: tuple[tuple[str, str], ...]
    enabled: bool
    max_retries: int
    strict_matching: bool
    preserve_plex_edits: bool
    lock_synced_fields: bool
    overwrite_user_locks: bool
    connect_timeout: float
    read_timeout: float
    trigger_plex_scan: bool
    skip_not_found: bool
    reconcile_interval: str
    max_tags: int
    max_request_rate: float
    import_watch_history: bool
    watch_history_account: str
    debug_logging: bool
    sync_master: bool
    sync_title: bool
    sync_studio: bool
    sync_summary: bool
    sync_tagline: bool
    sync_date: bool
    sync_performers: bool
    sync_tags: bool
    sync_poster: bool
    sync_background: bool
    sync_collection: bool
    sync_group_collections: bool
    sync_network_collections: bool
    sync_collection_posters: bool
    collection_prefix: str

    def field_enabled(self, toggle: str) -> bool:
        """A field is written only when both the master switch and its own toggle are on."""
        return self.sync_master and bool(getattr(self, toggle))

    @property
    def reconcile_seconds(self) -> float | None:
        return RECONCILE_INTERVALS[self.reconcile_interval]

    def secrets(self) -> tuple[str, ...]:
        """Values that must never reach a log line or the stdout JSON."""
        return tuple(str(getattr(self, s.name)) for s in SCHEMA if s.secret and getattr(self, s.name))

    @property
    def plex_tls(self) -> bool | str:
        """What requests' `verify` gets for Plex: a CA file, off, or the system's CAs."""
        if not self.plex_verify_certificate:
            return False
        return self.plex_ca_file or True

    def require(self, *names: str) -> None:
        """Raise one SettingsError naming the first required setting that has no value."""
        for name in names or tuple(s.name for s in SCHEMA if s.required):
            if not getattr(self, name):
                spec = SCHEMA_BY_NAME[name]
                raise SettingsError(
                    f"Setting '{spec.display_name}' ({name}) is not set: set it in {WHERE_TO_SET}."
                )


def parse_path_map(text: str) -> tuple[tuple[str, str], ...]:
    """Parse `STASH=>PLEX; STASH2=>PLEX2` into pairs, longest Stash prefix first.

    Longest first, so `/data/a=>/x` wins over `/data=>/y` for files under `/data/a`.
    """
    pairs = []
    for chunk in text.replace("\n", ";").split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if "=>" not in chunk:
            raise ValueError(f"'{chunk}' has no '=>'")
        src, dst = (part.strip() for part in chunk.split("=>", 1))
        if not src or not dst:
            raise ValueError(f"'{chunk}' needs a prefix on both sides of '=>'")
        pairs.append((src, dst))
    return tuple(sorted(pairs, key=lambda p: len(p[0]), reverse=True))


def _coerce(spec: Setting, raw: Any) -> Any:
    """Turn what Stash sent into the declared type, or raise ValueError saying why."""
    if spec.type == "BOOLEAN":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return raw.strip().lower() in ("true", "1", "yes")
        raise ValueError(f"expected true or false, got {raw!r}")
    if spec.type == "NUMBER":
        if isinstance(raw, bool):
            raise ValueError(f"expected a number, got {raw!r}")
        value = float(raw)
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"expected a number, got {raw!r}")
        if spec.minimum is not None and value < spec.minimum:
            raise ValueError(f"{value:g} is below the minimum {spec.minimum:g}")
        if spec.maximum is not None and value > spec.maximum:
            raise ValueError(f"{value:g} is above the maximum {spec.maximum:g}")
        return value
    if not isinstance(raw, str):
        raise ValueError(f"expected text, got {raw!r}")
    value = raw if spec.keep_spaces else raw.strip()
    if spec.choices is not None and value.lower() not in spec.choices:
        raise ValueError(f"'{value}' is not one of {', '.join(spec.choices)}")
    return value.lower() if spec.choices is not None else value


_INT_SETTINGS = {"max_retries", "max_tags"}


def _finish(name: str, value: Any) -> Any:
    """Shape a coerced value into the form `Settings` holds."""
    if name == "plex_library":
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if name == "path_map":
        return parse_path_map(value)
    if name == "plex_url":
        return value.rstrip("/")
    if name in _INT_SETTINGS:
        return int(value)
    return value


def load_settings(raw: Mapping[str, Any] | None, warn: Callable[[str], None]) -> Settings:
    """Build `Settings` from Stash's stored map, falling back per value with one warning each.

    Unknown keys are ignored (a newer or older version may have stored them); `None` means
    "never saved" and takes the default silently, as does an empty string for an optional
    setting.
    """
    raw = raw or {}
    values: dict[str, Any] = {}
    for spec in SCHEMA:
        given = raw.get(spec.name)
        values[spec.name] = _finish(spec.name, spec.default)
        if given is None or (given == "" and spec.type != "STRING"):
            continue
        try:
            values[spec.name] = _finish(spec.name, _coerce(spec, given))
        except (TypeError, ValueError) as exc:
            if spec.secret:
                warn(f"Setting {spec.name} ignored (its value is not {spec.type.lower()}); using the default.")
            else:
                warn(f"Setting {spec.name}={given!r} ignored ({exc}); using the default {spec.default!r}.")
    return Settings(**values)


def plugin_settings_map(plugins: Mapping[str, Any] | None, plugin_id: str = PLUGIN_ID) -> dict[str, Any]:
    """Pick our map out of `configuration.plugins`, matching the id case-insensitively.

    Stash before v0.26 lower-cased plugin ids in its config file.
    """
    for key, value in (plugins or {}).items():
        if key.lower() == plugin_id.lower() and isinstance(value, Mapping):
            return dict(value)
    return {}


assert {f.name for f in fields(Settings)} == set(SCHEMA_BY_NAME), "Settings and SCHEMA disagree"
