"""A small reverse proxy for tests: Plex behind `http://127.0.0.1:<port>/plex`, as users run it
behind nginx or Caddy at `https://media.example.org/plex`.

It strips the path prefix, forwards method, headers and body to the upstream, and answers
what nginx answers when the upstream fails: 502 Bad Gateway when the upstream refuses the
connection, 504 Gateway Timeout when it does not answer within `upstream_timeout`. Every
path it saw is kept in `seen`, so a test can check that every request carried the prefix.

`silent_port` is the other half of timeout tests: a port whose accept queue is full, so a
connection attempt hangs until the client's connect timeout, as with a host that drops
packets.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


class ReverseProxy:
    def __init__(self, upstream: str, prefix: str = "/plex", upstream_timeout: float = 5.0) -> None:
        self.upstream = urlsplit(upstream)
        self.prefix = prefix.rstrip("/")
        self.upstream_timeout = upstream_timeout
        self.seen: list[str] = []
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def __enter__(self) -> ReverseProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def forward(self, handler: BaseHTTPRequestHandler) -> tuple[int, list[tuple[str, str]], bytes]:
        self.seen.append(urlsplit(handler.path).path)
        if not handler.path.startswith(self.prefix + "/") and handler.path != self.prefix:
            return 404, [], b"no such location"
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
        conn = http.client.HTTPConnection(self.upstream.hostname or "", self.upstream.port,
                                          timeout=self.upstream_timeout)
        try:
            conn.request(handler.command, handler.path[len(self.prefix):] or "/", body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}]
            return answer.status, kept, data
        except TimeoutError:
            return 504, [], b"<html><body><h1>504 Gateway Time-out</h1></body></html>"
        except OSError:
            return 502, [], b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: ReverseProxy

    def _relay(self) -> None:
        status, headers, body = self.proxy.forward(self)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if not headers:
            self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _relay

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that accepts no connection in time: it listens, but its accept queue
    is filled by our own connections and nobody accepts, so the next SYN gets no answer."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):  # a backlog of 0 still queues one or two: fill it, whatever it is
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
