"""One processor at a time, and how a foreground task takes over from the background worker.

A task the user started (Process Queue, Sync All, DLQ tools) must not run beside the
background worker, and must not wait for it to drain a whole library either. While it waits
it holds an OS lock on the request file and stamps its mtime; the worker checks between
jobs (one `stat`, and a lock probe only when the stamp is fresh, no query), stops after the
job in hand and releases the lock, which the task then takes. Stash cancels a task with
SIGKILL, which leaves the file behind but drops the task's lock, so a request counts only
while its lock is held: a killed task stops no worker. A stamp older than `REQUEST_TTL` is
ignored without a probe. Waking a sleeping worker is simpler: a hook touches `worker.wake`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import Timeout

from base.errors import Stash2PlexError
from sync_queue.lock import LockNotAcquired, ProcessorLock, file_lock, held_elsewhere
from worker.launch import WAKE_FILE, stamp

REQUEST_FILE = "handover.request"
REQUEST_TTL = 600.0
#: A waiting task tries for the processor lock in slices this long, and for the request lock
#: this long (a worker's probe holds it for microseconds).
WAIT_SLICE = 1.0
REQUEST_GRAB = 0.5
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
    path = Path(data_dir) / REQUEST_FILE
    return fresh(_mtime(path), now) and held_elsewhere(path)


def wake_stamp(data_dir: Path) -> float | None:
    return _mtime(Path(data_dir) / WAKE_FILE)


@contextmanager
def processor(data_dir: Path, timeout: float = TAKEOVER_TIMEOUT) -> Iterator[ProcessorLock]:
    """Hold the processor lock, asking a running worker to hand it over if needed.

    Waits in short slices so that a second task waiting beside us takes over the request
    (and its lock) once we got the processor, instead of waiting unheard behind us.
    """
    lock = ProcessorLock(Path(data_dir))
    if not lock.try_acquire():
        path = Path(data_dir) / REQUEST_FILE
        request = file_lock(path)
        deadline = time.monotonic() + timeout
        try:
            while not lock.held:
                if not request.is_locked:
                    try:
                        request.acquire(timeout=REQUEST_GRAB)  # a worker's probe holds it for an instant
                        stamp(path, time.time())
                    except Timeout:
                        pass  # another task is asking already; its request stands for both of us
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProcessorBusy(
                        f"The background worker did not hand over the queue within {int(timeout)} s; try again."
                    )
                with suppress(LockNotAcquired):
                    lock.acquire(min(WAIT_SLICE, left))
        finally:
            request.release(force=True)
    try:
        yield lock
    finally:
        lock.release()
