"""Why a request to Plex or Stash failed, classified once, and said in words a user can act on.

requests reports a refused port, an unknown host name, a certificate for another name and
plain HTTP sent to a TLS port as the same `ConnectionError`; the difference is buried in
the exception chain (`ConnectionRefusedError`, `socket.gaierror`, `ssl.SSLError`...). One
pure function reads that chain (`classify`), so the Plex and Stash façades, Health Check and
the tests agree on what happened, and one table (`_WORDS`) says it.

Whether a failure can pass by itself decides what the queue does with it: a refused or
timed-out connection or a proxy answering 502 is an outage (the jobs wait, no attempt is
used); a certificate that does not verify, the wrong scheme or a name that does not resolve
will fail the same way until a setting changes, so it stops the task like a bad token does.

Stdlib only at module level (like the rest of `plugin/`); requests and urllib3 are imported
inside `classify`, which does no I/O.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit, urlunsplit


class Cause(str, Enum):
    REFUSED = "refused"
    CONNECT_TIMEOUT = "connect_timeout"
    READ_TIMEOUT = "read_timeout"
    DROPPED = "dropped"
    NAME_NOT_RESOLVED = "name_not_resolved"
    CERTIFICATE = "certificate"
    HTTPS_TO_HTTP = "https_to_http"  # https:// sent to a port that speaks plain HTTP
    HTTP_TO_HTTPS = "http_to_https"  # http:// sent to a port that speaks HTTPS
    PROXY_GATEWAY = "proxy_gateway"  # a reverse proxy answered 502/504 for the server behind it
    PROXY_UNREACHABLE = "proxy_unreachable"  # the HTTP(S)_PROXY of the environment failed
    OTHER = "other"


#: Causes a setting must fix; every other cause may pass by itself.
CONFIG_CAUSES = frozenset({Cause.NAME_NOT_RESOLVED, Cause.CERTIFICATE, Cause.HTTPS_TO_HTTP, Cause.HTTP_TO_HTTPS})
#: The request may have reached the server: retried as a temporary failure, not an outage.
TRANSIENT_CAUSES = frozenset({Cause.READ_TIMEOUT, Cause.DROPPED})


@dataclass(frozen=True)
class NetFailure:
    cause: Cause
    detail: str = ""  # the certificate's complaint, the host name, the proxy's status line

    @property
    def needs_setting(self) -> bool:
        return self.cause in CONFIG_CAUSES

    @property
    def transient(self) -> bool:
        return self.cause in TRANSIENT_CAUSES


#: What a plain-HTTP client reads from a TLS server: the start of a TLS alert record, or
#: nginx's own page for it.
_TLS_RECORD = "\\x15\\x03"
_PLAIN_TO_TLS_PAGE = "plain http request was sent to https port"
_WRONG_PROTOCOL = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL",
                   "HTTP_REQUEST")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything behind it: causes, contexts, and the `reason`/first
    argument urllib3 and requests wrap the real error in."""
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or any(item is seen for seen in out):
            continue
        out.append(item)
        reason = getattr(item, "reason", None)
        first = item.args[0] if item.args else None
        todo += [item.__cause__, item.__context__,
                 reason if isinstance(reason, BaseException) else None,
                 first if isinstance(first, BaseException) else None]
    return out


def classify(exc: BaseException) -> NetFailure | None:
    """The cause of a failed request, or None when `exc` is not a network failure. Pure."""
    import requests
    import urllib3.exceptions as u3

    chain = _chain(exc)

    def has(*kinds: type[BaseException]) -> BaseException | None:
        return next((e for e in chain if isinstance(e, kinds)), None)

    if has(requests.exceptions.ProxyError, u3.ProxyError):
        return NetFailure(Cause.PROXY_UNREACHABLE, str(exc)[:200])
    cert = has(ssl.SSLCertVerificationError)
    if cert is not None:
        return NetFailure(Cause.CERTIFICATE, (getattr(cert, "verify_message", "") or str(cert)).rstrip("."))
    tls = has(ssl.SSLError) or has(u3.SSLError)
    if tls is not None and "fingerprint" in str(tls).lower():
        return NetFailure(Cause.CERTIFICATE, "it is not the certificate expected (fingerprint differs)")
    if tls is not None:
        reason = str(getattr(tls, "reason", "") or "") + " " + str(tls)
        if any(word in reason.upper() for word in _WRONG_PROTOCOL):
            return NetFailure(Cause.HTTPS_TO_HTTP)
        return NetFailure(Cause.CERTIFICATE, str(tls))
    if has(u3.NameResolutionError, socket.gaierror):
        host = getattr(has(u3.NameResolutionError), "_host", "") or ""
        return NetFailure(Cause.NAME_NOT_RESOLVED, host)
    if has(ConnectionRefusedError):
        return NetFailure(Cause.REFUSED)
    if has(requests.exceptions.ConnectTimeout, u3.ConnectTimeoutError):
        return NetFailure(Cause.CONNECT_TIMEOUT)
    if has(requests.exceptions.ReadTimeout, u3.ReadTimeoutError, TimeoutError):
        return NetFailure(Cause.READ_TIMEOUT)
    if any(_TLS_RECORD in repr(e) or _TLS_RECORD in str(e) for e in chain):
        return NetFailure(Cause.HTTP_TO_HTTPS)
    if has(ConnectionResetError, u3.ProtocolError, requests.exceptions.ChunkedEncodingError,
           ConnectionAbortedError, BrokenPipeError):
        return NetFailure(Cause.DROPPED, type(chain[-1]).__name__)
    if has(requests.exceptions.ConnectionError, OSError):
        return NetFailure(Cause.OTHER, f"{type(chain[-1]).__name__}: {chain[-1]}"[:200])
    return None


def from_status(status: int, body: str = "") -> NetFailure | None:
    """An HTTP answer that is a network failure in disguise: nginx telling a plain-HTTP client
    it reached a TLS port (400), or a reverse proxy whose upstream is down (502, 504)."""
    from http import HTTPStatus

    if status == 400 and _PLAIN_TO_TLS_PAGE in body.lower():
        return NetFailure(Cause.HTTP_TO_HTTPS)
    if status in (502, 504):
        return NetFailure(Cause.PROXY_GATEWAY, f"{status} {HTTPStatus(status).phrase}")
    return None


def address(url: str) -> str:
    """The URL as it may be shown: scheme, host, port and path, never a query or a password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class Fixes:
    """The settings a user changes for one server, named as Stash shows them."""

    url: str
    tls: str  # how to trust a certificate
    timeouts: str = ""


_WORDS: dict[Cause, str] = {
    Cause.REFUSED: "refused the connection: nothing listens on that port (is it running, and is the port in {url} right?)",
    Cause.CONNECT_TIMEOUT: "did not accept a connection in time{timeouts}: the host is off, a firewall drops the "
                           "traffic, or {url} names the wrong host",
    Cause.READ_TIMEOUT: "accepted the request but did not answer in time{timeouts}",
    Cause.DROPPED: "dropped the connection before answering ({detail})",
    Cause.NAME_NOT_RESOLVED: "cannot be found: the host name{host} does not resolve. Fix the host in {url} "
                             "(between Docker containers use the container name)",
    Cause.CERTIFICATE: "presented a certificate that does not verify ({detail}). {tls}",
    Cause.HTTPS_TO_HTTP: "speaks plain HTTP on that port, not HTTPS: use http:// in {url}",
    Cause.HTTP_TO_HTTPS: "speaks HTTPS on that port, not plain HTTP: use https:// in {url}",
    Cause.PROXY_GATEWAY: "is behind a proxy that answered {detail}: the proxy is up, the server behind it is not "
                         "answering",
    Cause.PROXY_UNREACHABLE: "cannot be reached through the proxy set in HTTP_PROXY/HTTPS_PROXY ({detail})",
    Cause.OTHER: "cannot be reached ({detail})",
}


def explain(failure: NetFailure, server: str, url: str, fixes: Fixes) -> str:
    """One line: the server, its address (no token) and the cause in words, with the fix."""
    host = urlsplit(url).hostname or ""
    text = _WORDS[failure.cause].format(
        url=fixes.url, tls=fixes.tls, detail=failure.detail or failure.cause.value,
        timeouts=f" ({fixes.timeouts})" if fixes.timeouts else "",
        host=f" '{failure.detail or host}'" if (failure.detail or host) else "")
    return f"{server} at {address(url)} {text}"
