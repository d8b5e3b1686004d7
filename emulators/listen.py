"""Listening again on a fixed port after going down, as a restarted server does.

A server going down closes its listening socket, but a plugin process being started at
that moment (fork, then close its inherited descriptors, then exec) may hold a copy of it
for a few milliseconds on a loaded machine; binding the port again meanwhile fails with
"address in use". A real server restarting takes longer than that, so the emulators wait
the copy out instead of failing the restart.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import TypeVar

S = TypeVar("S")

#: Longest a restart waits for its port: far beyond any fork-to-exec window.
PATIENCE_S = 10.0


def listen(make: Callable[[], S], port: int, sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> S:
    """`make()` (which binds `port`), retried while a fixed port is still in use."""
    deadline = clock() + PATIENCE_S
    while True:
        try:
            return make()
        except OSError as exc:
            if port == 0 or exc.errno != errno.EADDRINUSE or clock() > deadline:
                raise
        sleep(0.02)
