"""Start the background worker from a hook without making Stash's save wait for it.

Stash waits for EOF on the hook's stdout, so the worker gets its own session and none of our
stdio. Standard library only: this runs on the hook's fast path.

Who starts a worker, and when, is decided with the processor lock itself, which the OS
releases when its holder dies:

* the lock is held: a worker is draining and will see our event (it re-reads the inbox after
  releasing the lock and before exiting, so an event recorded before our probe is never
  stranded);
* the lock is free: we take it for a moment, and only if no worker was spawned in the last
  few seconds do we stamp the spawn time and start one. Two hundred hooks at once therefore
  start one worker, not two hundred.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any

LOCK_FILE = "processor.lock"
SPAWN_STAMP = "worker.spawned"
WAKE_FILE = "worker.wake"  # touched when a worker runs already: new events wait in the inbox
SPAWN_GRACE = 10.0  # seconds a freshly spawned worker has to take the lock
#: The internal task mode the background worker runs under (never shown in Stash).
WORKER_MODE = "_worker"


def worker_input(server_connection: dict[str, Any]) -> dict[str, Any]:
    """The stdin a spawned worker reads, as Stash would give a task in `WORKER_MODE`."""
    return {"server_connection": server_connection, "args": {"mode": WORKER_MODE}}


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_FILE


def try_lock(handle: IO[bytes]) -> bool:
    """Take the processor lock without waiting; False if another process holds it."""
    if os.name == "nt":
        import msvcrt

        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def unlock(handle: IO[bytes]) -> None:
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def stamp(path: Path, now: float) -> None:
    """Create `path` if needed and set its mtime to `now`: our cross-process signal files."""
    path.touch()
    os.utime(path, (now, now))


def should_spawn(last_spawn: float | None, now: float, grace: float = SPAWN_GRACE) -> bool:
    """Spawn unless a worker was started so recently that it may still be starting up. Pure.

    "Recently" reaches both ways: a hook's `now` is read when its process starts, and of two
    hooks started together the one that read the earlier time may reach the lock second and
    find a stamp a little *after* its `now`; that is the same burst, not a clock set back.
    """
    return last_spawn is None or not (-grace < now - last_spawn < grace)


def ensure_worker(data_dir: Path, entrypoint: Path, stdin_payload: dict[str, Any], now: float) -> bool:
    """Start a detached worker unless one is running or starting; True if we started one."""
    path = lock_path(data_dir)
    with open(path, "a+b") as handle:
        if not try_lock(handle):
            # A worker holds the lock; it may be sleeping until a later due time.
            stamp(data_dir / WAKE_FILE, now)
            return False
        try:
            spawned = data_dir / SPAWN_STAMP
            last = spawned.stat().st_mtime if spawned.exists() else None
            if not should_spawn(last, now):
                return False
            stamp(spawned, now)
        finally:
            unlock(handle)
    spawn_detached(entrypoint, stdin_payload, cwd=data_dir)
    return True


def spawn_detached(entrypoint: Path, stdin_payload: dict[str, Any], cwd: Path) -> None:
    """Run `python <entrypoint>` fully detached, handing it its input on a private pipe.

    The input travels through the pipe, not the command line or a file, so Stash's session
    cookie never sits where another user could read it.
    """
    import subprocess  # only the hook that starts a worker pays for it (7 ms)

    kwargs: dict[str, Any] = {}
    if os.name == "nt":
        kwargs["creationflags"] = 0x00000008 | 0x00000200  # DETACHED_PROCESS | NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True
    proc = subprocess.Popen(
        [sys.executable, str(entrypoint)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=str(cwd),
        close_fds=True,
        **kwargs,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(stdin_payload).encode())
    proc.stdin.close()
    proc.returncode = 0  # never waited for: keeps Popen.__del__ from warning about it
