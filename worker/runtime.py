"""What a task handler is given: the input, the log, the data folder, and lazy clients.

Settings and the Stash client are built on first use, because reading settings is a
GraphQL round trip and most failures (bad stdin, unknown mode) should not pay for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from base.protocol import PluginInput, StashLog
from base.settings import Settings, load_settings

if TYPE_CHECKING:
    from stash.client import StashClient


@dataclass
class RunContext:
    input: PluginInput
    log: StashLog
    data_dir: Path
    entrypoint: Path
    clock: Callable[[], float] = field(default=time.time)

    @property
    def args(self) -> dict[str, Any]:
        return self.input.args

    @cached_property
    def stash(self) -> StashClient:
        from stash.client import StashClient

        return StashClient(self.input.server_connection, self.log)

    @cached_property
    def settings(self) -> Settings:
        """Our settings as Stash stores them, defaults filled in, secrets registered for masking."""
        raw = self.stash.plugin_settings()
        values = [raw.get(name) for name in ("plex_token",) if raw.get(name)]
        self.log.add_secrets(str(v) for v in values)
        settings = load_settings(raw, self.log.warning)
        self.log.add_secrets(settings.secrets())
        self.log.debug_enabled = settings.debug_logging
        return settings
