"""One processor at a time, and how a foreground task takes over from the background worker.

A task the user started (Process Queue, Sync All, DLQ tools) must not run beside the
background worker, and must not wait for it to drain a whole library either. It leaves a
request file; the worker checks it between jobs (one `stat`, no query), stops after the job
in hand and releases the lock, which the task then takes. A request older than
`REQUEST_TTL` is ignored, so a task killed while waiting cannot stop later workers.
Waking a sleeping worker uses the same mechanism: a hook touches `worker.wake`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plugin.errors import Stash2PlexError
from sync_queue.lock import LockNotAcquired, ProcessorLock
from worker.launch import WAKE_FILE, stamp

REQUEST_FILE = "handover.request"
REQUEST_TTL = 600.0
#: Long enough for the job in hand to finish: a read timeout with its transient retries.
TAKEOVER_TIMEOUT = 300.0


class ProcessorBusy(Stash2PlexError):
    """The background worker did not hand over in time."""


def fresh(mtime: float | None, now: float, ttl: float = REQUEST_TTL) -> bool:
    """A stamp counts while it is younger than `ttl` (and not from the future by much)."""
    return mtime is not None and -5.0 <= now - mtime < ttl


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def handover_requested(data_dir: Path, now: float) -> bool:
    return fresh(_mtime(Path(data_dir) / REQUEST_FILE), now)


def wake_stamp(data_dir: Path) -> float | None:
    return _mtime(Path(data_dir) / WAKE_FILE)


@contextmanager
def processor(data_dir: Path, timeout: float = TAKEOVER_TIMEOUT) -> Iterator[ProcessorLock]:
    """Hold the processor lock, asking a running worker to hand it over if needed."""
    lock = ProcessorLock(Path(data_dir))
    request = Path(data_dir) / REQUEST_FILE
    if not lock.try_acquire():
        stamp(request, time.time())
        try:
            lock.acquire(timeout)
        except LockNotAcquired:
            raise ProcessorBusy(
                f"The background worker did not hand over the queue within {int(timeout)} s; try again."
            ) from None
        finally:
            request.unlink(missing_ok=True)
    try:
        yield lock
    finally:
        lock.release()
