"""Listening again on a fixed port after going down, as a restarted server does, and going
down for kept-alive connections too (`ResettableServer`).

A server going down closes its listening socket, but a plugin process being started at
that moment (fork, then close its inherited descriptors, then exec) may hold a copy of it
for a few milliseconds on a loaded machine; binding the port again meanwhile fails with
"address in use". A real server restarting takes longer than that, so the emulators wait
the copy out instead of failing the restart.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

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


class ResettableServer:
    """Mixed into a threading `socketserver` server that keeps connections alive, as real
    Plex and Stash do (HTTP/1.1): it remembers the open ones, so that going down resets them
    too. Closing the listener alone would leave a kept-alive client served by its handler
    thread, an outage the client never sees."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def opened(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self.connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self.connections.discard(connection)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.opened(request)
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request: Any) -> None:
        self.closed(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def reset_connections(self) -> None:
        with self._connections_lock:
            open_now = list(self.connections)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
