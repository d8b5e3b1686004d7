"""The processor lock: at most one process takes jobs at a time.

Built on ``filelock`` (``flock`` on POSIX, ``msvcrt.locking`` on Windows), which is an OS lock
on an open file: the kernel drops it when the holder's process dies, however it dies. A
SIGKILLed worker therefore cannot keep the lock, and there is no stale-lock timeout to tune.
A pid file would have neither property.

The file is ``<data_dir>/processor.lock``, the same file ``worker/launch.py`` probes before
starting a worker; on both platforms the two take the same kind of lock on it, so they
exclude each other. The file is left in place on release: unlinking a locked path lets two
processes lock two different inodes.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

LOCK_FILE = "processor.lock"


def file_lock(path: Path) -> FileLock:
    """The one way we lock a file: a plain OS lock, not filelock's per-process singleton."""
    return FileLock(str(path), is_singleton=False, thread_local=False)


def held_elsewhere(path: Path) -> bool:
    """Does some process hold the OS lock on `path`? Takes it for an instant to find out."""
    probe = file_lock(path)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    probe.release(force=True)
    return False


class LockNotAcquired(RuntimeError):
    """Another process is the processor."""


class ProcessorLock:
    """Non-reentrant use is the contract: acquire once, release once."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = file_lock(self.path)

    @property
    def held(self) -> bool:
        """True if this object holds the lock."""
        return self._lock.is_locked

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never wait."""
        if self._lock.is_locked:
            return True
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        return True

    def acquire(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds; raise LockNotAcquired after that."""
        if self._lock.is_locked:
            return
        try:
            self._lock.acquire(timeout=timeout, poll_interval=0.05)
        except Timeout:
            raise LockNotAcquired(f"another Stash2Plex process is processing the queue ({self.path})") from None

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    def is_held_elsewhere(self) -> bool:
        """For status reports: is some other process (or object) processing right now?

        Probes with a second lock object, so it answers correctly inside the holder too.
        """
        return not self._lock.is_locked and held_elsewhere(self.path)

    def __enter__(self) -> ProcessorLock:
        if not self.try_acquire():
            raise LockNotAcquired(f"another Stash2Plex process is processing the queue ({self.path})")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
