"""Building the processing core's services for one process, and closing them again.

The only place that wires settings to clients: the background worker and every foreground
task get the same queue, state store, Stash client and Plex side, configured the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from plugin.protocol import StashLog
from sync_queue.jobs import JobQueue
from sync_queue.state import LOCKS_FORGOTTEN, StateStore
from worker.core import LedgerClaims, Services
from worker.policy import RetryPolicy

if TYPE_CHECKING:
    from plugin.runtime import RunContext


@contextmanager
def services(ctx: RunContext, log: StashLog | None = None) -> Iterator[Services]:
    """Everything `worker.core.drain` needs; raises SettingsError for a missing Plex setting."""
    from plex.connection import shared_connection
    from plex.sync import PlexSync

    settings = ctx.settings
    settings.require("plex_url", "plex_token")
    conn = shared_connection(settings, ctx.data_dir)
    queue = JobQueue(ctx.data_dir)
    state = StateStore(ctx.data_dir)
    plex = PlexSync(conn, settings, ctx.stash.fetch_image, LedgerClaims(queue, ctx.stash))
    plex.own_unknown_locks = state.get(LOCKS_FORGOTTEN) is not None
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
        )
    finally:
        state.close()
        queue.close()
