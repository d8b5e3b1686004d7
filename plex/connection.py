"""The one Plex connection of a process: plexapi underneath, our error classes on top.

Everything that goes to Plex passes through `PlexConnection.query`, which

* sends it through plexapi's `PlexServer.query` (its headers, token handling and error
  classes) on one `requests.Session` with `(connect_timeout, read_timeout)`;
* translates every failure at this edge (see `translate`), so nothing above sees a
  plexapi or requests exception;
* retries **only** `TransientError`, at most twice, quickly, honouring a short
  `Retry-After`. Outages, auth errors, bad data and not-found are never retried here: the
  queue's backoff and breaker own those, and two retry loops stacked would multiply;
* counts requests, so a sync can report its cost and the benchmark can check it;
* spaces requests to honour `max_request_rate` (the token bucket of `plex.pacing`, the
  same one the worker's drain uses for a Retry-After hold).

Device identity: plexapi derives `X-Plex-Client-Identifier` from the MAC address, which
changes in containers, so every run could register a new device on the Plex account. We
keep a UUID in `<data dir>/client_id` and put it into plexapi's shared header dict.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from plex.pacing import Pacer, RateLimit, wait_turn
from plugin.errors import (
    InvalidData,
    PlexAuthError,
    PlexNotFound,
    PlexUnavailable,
    Stash2PlexError,
    TransientError,
)

PRODUCT = "Stash2Plex"
CLIENT_ID_FILE = "client_id"

#: Extra attempts after the first, for transient failures only.
TRANSIENT_RETRIES = 2
#: A `Retry-After` up to this many seconds is waited out here; a longer one goes to the queue.
RETRY_AFTER_CAP = 5.0
#: Wait before the n-th retry when the server gave no hint: 0.25 s, 0.5 s.
FIRST_WAIT = 0.25

Sleep = Callable[[float], None]
Clock = Callable[[], float]


# --- identity and plexapi configuration --------------------------------------------------


def client_identifier(data_dir: Path) -> str:
    """The UUID stored in `data_dir/client_id`, created on first use."""
    path = Path(data_dir) / CLIENT_ID_FILE
    try:
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
    except FileNotFoundError:
        pass
    value = str(uuid.uuid4())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return value


def configure_plexapi(identifier: str) -> None:
    """Pin the plexapi behaviour we rely on before any plexapi object exists.

    Auto-reload off: we never read plexapi objects' attributes, but if anything did, a
    silent extra request is worse than an empty value. The headers are changed in place
    because `plexapi.server` imported the dict itself, not the module.
    """
    os.environ["PLEXAPI_PLEXAPI_AUTORELOAD"] = "false"
    import plexapi

    plexapi.X_PLEX_IDENTIFIER = identifier
    plexapi.BASE_HEADERS.update({
        "X-Plex-Client-Identifier": identifier,
        "X-Plex-Product": PRODUCT,
        "X-Plex-Device-Name": PRODUCT,
    })


# --- the session: counting, rate limit, last response ------------------------------------


class RecordingSession(requests.Session):
    """A session that remembers the last answer (plexapi's errors drop its headers),
    counts requests and spaces them to at most `rate` per second (0 = no limit)."""

    def __init__(self, rate: float = 0.0, clock: Clock | None = None, sleep: Sleep | None = None) -> None:
        super().__init__()
        import time

        self.limit = RateLimit.per_second(rate)
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep
        self.count = 0
        self.last_status: int | None = None
        self.last_headers: Mapping[str, str] = {}
        self._pacer = Pacer()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self._pacer = wait_turn(self._pacer, self.limit, self.clock(), self.sleep)
        self.count += 1
        self.last_status, self.last_headers = None, {}
        response = super().request(method, url, *args, **kwargs)
        self.last_status, self.last_headers = response.status_code, response.headers
        return response


# --- error translation -------------------------------------------------------------------


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header given in seconds; an HTTP date is ignored."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


_STATUS = re.compile(r"^\((\d{3})\)")


def _connection_error(exc: requests.ConnectionError, what: str) -> Stash2PlexError:
    """Refused or unresolvable is an outage; a connection dropped mid-answer is transient."""
    import urllib3.exceptions as u3

    reason = exc.args[0] if exc.args else None
    if isinstance(reason, u3.MaxRetryError):
        reason = reason.reason
    if isinstance(reason, (u3.ProtocolError, ConnectionResetError)):
        return TransientError(f"Plex dropped the connection during {what}: {type(reason).__name__}")
    return PlexUnavailable(f"Plex cannot be reached ({what}): {type(reason or exc).__name__}")


def translate(exc: BaseException, what: str, session: RecordingSession | None = None) -> Stash2PlexError:
    """Map a plexapi or requests failure to our vocabulary; `what` names the request."""
    from plexapi.exceptions import BadRequest, NotFound, Unauthorized

    if isinstance(exc, Stash2PlexError):
        return exc
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return PlexUnavailable(f"Plex did not accept a connection in time ({what})")
    if isinstance(exc, (requests.Timeout, requests.exceptions.ChunkedEncodingError)):
        return TransientError(f"Plex did not answer in time ({what}): {type(exc).__name__}")
    if isinstance(exc, requests.ConnectionError):
        return _connection_error(exc, what)
    if isinstance(exc, Unauthorized):
        return PlexAuthError(f"Plex refused the token (401) for {what}: check the Plex token setting")
    if isinstance(exc, NotFound):
        return PlexNotFound(f"Plex has no {what} (404)")
    if isinstance(exc, BadRequest):
        return _http_error(exc, what, session)
    return TransientError(f"Unexpected failure during {what}: {type(exc).__name__}: {exc}")


def _http_error(exc: Exception, what: str, session: RecordingSession | None) -> Stash2PlexError:
    found = _STATUS.match(str(exc))
    status = int(found.group(1)) if found else (session.last_status if session else None) or 0
    headers = session.last_headers if session else {}
    if status == 429 or status >= 500:
        return TransientError(f"Plex answered {status} to {what}",
                              retry_after=parse_retry_after(headers.get("Retry-After")))
    return InvalidData(f"Plex rejected {what} ({status}): {str(exc)[:300]}")


def _plex_answer(root: Any, read: bool, what: str) -> Any:
    """An answer the caller reads must be Plex's XML. An empty body (plexapi's None) or
    another document (a proxy's HTML error page sent with 200) is not Plex talking: read as
    an empty library it would look like every scene went missing, so it is transient."""
    if read and (root is None or getattr(root, "tag", None) != "MediaContainer"):
        shown = "an empty body" if root is None else f"a <{root.tag}> document"
        raise TransientError(f"Plex answered {what} with {shown}, not its XML")
    return root


def _plex_server(server: Any) -> Any:
    """The root answer names the server; one that does not (a 200 page from a proxy) is not Plex."""
    if not getattr(server, "machineIdentifier", None):
        raise TransientError("Plex answered the server root (/) with something that is not its XML")
    return server


# --- retry policy (tenacity, transient only) ---------------------------------------------


def _stop(state: RetryCallState) -> bool:
    """Stop after the bounded attempts, or at once when the server asks for a long pause."""
    exc = state.outcome.exception() if state.outcome else None
    hint = getattr(exc, "retry_after", None)
    return state.attempt_number > TRANSIENT_RETRIES or (hint is not None and hint > RETRY_AFTER_CAP)


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    hint = getattr(exc, "retry_after", None)
    return hint if hint is not None else FIRST_WAIT * 2 ** (state.attempt_number - 1)


def retrying(sleep: Sleep) -> Retrying:
    return Retrying(retry=retry_if_exception_type(TransientError), stop=_stop, wait=_wait,
                    sleep=sleep, reraise=True)


# --- the connection ---------------------------------------------------------------------


class PlexConnection:
    """One `PlexServer` per process, built on first use (its `GET /` is the first request)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_request_rate: float = 0.0,
        data_dir: Path | None = None,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
    ) -> None:
        import time

        self.url = url.rstrip("/")
        self._token = token
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.sleep = sleep or time.sleep
        self.session = RecordingSession(max_request_rate, clock=clock, sleep=self.sleep)
        self.identifier = client_identifier(data_dir) if data_dir is not None else None
        self._server: Any = None

    @property
    def requests_made(self) -> int:
        return self.session.count

    def server(self) -> Any:
        if self._server is None:
            if self.identifier:
                configure_plexapi(self.identifier)
            else:
                os.environ["PLEXAPI_PLEXAPI_AUTORELOAD"] = "false"
            from plexapi.server import PlexServer

            self._server = self._guarded(
                "the server root (/)",
                lambda: _plex_server(PlexServer(self.url, self._token, session=self.session, timeout=self.timeout)))
        return self._server

    def query(self, key: str, method: str = "GET", *, headers: Mapping[str, str] | None = None,
              data: bytes | None = None, what: str | None = None, read: bool | None = None) -> Any:
        """`PlexServer.query` with translation and the transient retry; returns the XML root.

        `read` (default: a GET) says the caller reads the answer, so it must be Plex's XML;
        a GET that only asks for something (a folder scan) answers with an empty body.
        """
        server = self.server()
        verb = {"GET": self.session.get, "PUT": self.session.put, "POST": self.session.post}[method]
        label = what or f"{method} {key.split('?', 1)[0]}"
        kwargs: dict[str, Any] = {"method": verb, "headers": dict(headers or {})}
        if data is not None:
            kwargs["data"] = data
        reads = method == "GET" if read is None else read
        return self._guarded(label, lambda: _plex_answer(server.query(key, **kwargs), reads, label))

    def _guarded(self, what: str, call: Callable[[], Any]) -> Any:
        def attempt() -> Any:
            try:
                return call()
            except Exception as exc:  # translated at this edge, nowhere else
                raise translate(exc, what, self.session) from exc

        return retrying(self.sleep)(attempt)

    def close(self) -> None:
        self.session.close()


_SHARED: dict[tuple[str, str], PlexConnection] = {}


def shared_connection(settings: Any, data_dir: Path | None) -> PlexConnection:
    """The process's one connection (and so one `PlexServer`) for these settings' server.

    A long-lived worker that built a new connection per job would repeat `GET /` and the
    section lookups every time; keyed by (url, token) so a changed setting gets a new one.
    """
    key = (settings.plex_url, settings.plex_token)
    conn = _SHARED.get(key)
    if conn is None:
        conn = _SHARED[key] = PlexConnection(
            settings.plex_url, settings.plex_token, connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout, max_request_rate=settings.max_request_rate, data_dir=data_dir)
    return conn
