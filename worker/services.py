"""Building the processing core's services for one process, and closing them again.

The only place that wires settings to clients: the background worker and every foreground
task get the same queue, state store, Stash client and Plex side, configured the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from base.network import address
from base.protocol import StashLog
from base.settings import SCHEMA_BY_NAME, Settings
from sync_queue.jobs import JobQueue
from sync_queue.state import LOCKS_FORGOTTEN, StateStore
from worker.breaker_store import plex_target
from worker.core import Services
from worker.policy import RetryPolicy
from worker.sync_ledger import LedgerClaims

if TYPE_CHECKING:
    from worker.runtime import RunContext


_WARNED: set[str] = set()


def warn_unverified(settings: Settings, log: StashLog) -> None:
    """Once per run (process) while it is on: skipping certificate checks is the user's
    choice, and a silent one would be forgotten."""
    if settings.plex_tls is False and settings.plex_url.startswith("https://") and settings.plex_url not in _WARNED:
        _WARNED.add(settings.plex_url)
        name = SCHEMA_BY_NAME["plex_verify_certificate"].display_name
        log.warning(f"Stash2Plex: '{name}' is off: Plex's certificate at {address(settings.plex_url)} is not "
                    "checked, so anyone on the network path could pose as Plex and read the token.")


@contextmanager
def services(ctx: RunContext, log: StashLog | None = None) -> Iterator[Services]:
    """Everything `worker.core.drain` needs; raises SettingsError for a missing Plex setting."""
    from plex.connection import shared_connection
    from plex.sync import PlexSync

    settings = ctx.settings
    settings.require("plex_url", "plex_token")
    warn_unverified(settings, log or ctx.log)
    conn = shared_connection(settings, ctx.data_dir)
    queue = JobQueue(ctx.data_dir)
    state = StateStore(ctx.data_dir)
    plex = PlexSync(conn, settings, ctx.stash.fetch_image, LedgerClaims(queue, ctx.stash))
    plex.own_unknown_locks = state.get(LOCKS_FORGOTTEN) is not None
    plex.collection_store = (queue.collections, queue.ledger)
    try:
        yield Services(
            queue=queue,
            state=state,
            stash=ctx.stash,
            plex=plex,
            policy=RetryPolicy.from_settings(settings),
            log=log or ctx.log,
            token=settings.plex_token,
            settings=settings,
            target=plex_target(settings.plex_url, settings.plex_token),
        )
    finally:
        state.close()
        queue.close()
