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
* spaces requests to honour `max_request_rate`, and holds every request, from any thread,
  for a server's Retry-After once the drain says so (`hold`): the token bucket of
  `plex.pacing`, one per connection however many of the drain's threads use it;
* passes the user's certificate choice (`Settings.plex_tls`) with every request: requests
  lets `REQUESTS_CA_BUNDLE` override a Session's own `verify`, so a session attribute
  alone would be silently ignored on machines that set it.

Device identity: plexapi derives `X-Plex-Client-Identifier` from the MAC address, which
changes in containers, so every run could register a new device on the Plex account. We
keep a UUID in `<data dir>/client_id` and put it into plexapi's shared header dict.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from base import http_session, network
from base.backoff import REQUEST_BACKOFF, REQUEST_RETRIES, RETRY_AFTER_IN_REQUEST
from base.errors import (
    InvalidData,
    PlexAuthError,
    PlexConnectionSetupError,
    PlexNotFound,
    PlexUnavailable,
    Stash2PlexError,
    TransientError,
)
from base.settings import SCHEMA_BY_NAME
from plex.pacing import Pacer, RateLimit, hold, take

PRODUCT = "Stash2Plex"
CLIENT_ID_FILE = "client_id"


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


# --- query strings -----------------------------------------------------------------------

def query_string(params: Mapping[str, object]) -> str:
    """The query plexapi's `joinArgs` builds (keys in case-blind order, values escaped), in the
    form it goes out in: urllib3 escapes a key's brackets, so this does too. The same bytes
    reach Plex, and the session need not re-encode them (`http_session.sent_as_is`)."""
    return "&".join(f"{quote(key, safe='')}={quote(str(params[key]), safe='')}"
                    for key in sorted(params, key=str.lower))


# --- the session: counting, rate limit, last response ------------------------------------


class RecordingSession(requests.Session):
    """A session that remembers the last answer (plexapi's errors drop its headers),
    counts requests and spaces them to at most `rate` per second (0 = no limit).

    Safe to share between the drain and its small pool of writer threads: the bucket is one
    (reserved under a lock, slept outside it), so the pool together stays within the rate;
    a long Retry-After holds every thread's next request (`hold`); the last answer and a
    count are kept per thread too, so an error is explained with its own answer's headers
    and a sync counts its own requests.
    """

    def __init__(self, rate: float = 0.0, clock: Clock | None = None, sleep: Sleep | None = None,
                 tls: bool | str = True) -> None:
        super().__init__()
        import time

        self.tls = tls
        self.limit = RateLimit.per_second(rate)
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep
        self.count = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pacer = Pacer()
        http_session.settle(self)

    @property
    def last_status(self) -> int | None:
        return getattr(self._local, "status", None)

    @property
    def last_headers(self) -> Mapping[str, str]:
        return getattr(self._local, "headers", {})

    @property
    def count_here(self) -> int:
        """Requests this thread sent."""
        return getattr(self._local, "count", 0)

    def hold(self, seconds: float) -> None:
        """Pause every thread's next request for a server's Retry-After (`pacing.hold`)."""
        with self._lock:
            now = self.clock()
            self._pacer = hold(self._pacer, now + seconds, now)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        with self._lock:
            self._pacer, wait = take(self._pacer, self.limit, self.clock())
            self.count += 1
        if wait > 0:
            self.sleep(wait)
        local = self._local
        local.count = getattr(local, "count", 0) + 1
        local.status, local.headers = None, {}
        if self.tls is not True:  # True: requests' own choice (REQUESTS_CA_BUNDLE or certifi)
            kwargs["verify"] = self.tls
        response = super().request(method, url, *args, **kwargs)
        local.status, local.headers = response.status_code, response.headers
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


def _setting(name: str) -> str:
    return f"'{SCHEMA_BY_NAME[name].display_name}'"


#: How a Plex connection problem is fixed, in the words of the settings page.
FIXES = network.Fixes(
    url=_setting("plex_url"),
    tls=(f"Use the address the certificate is for in {_setting('plex_url')}, trust its CA with "
         f"{_setting('plex_ca_file')}, or turn {_setting('plex_verify_certificate')} off"),
)


def network_error(failure: network.NetFailure, url: str, what: str, timeout: tuple[float, float]) -> Stash2PlexError:
    """One classified failure as the error class that decides the job's fate: a setting to
    fix, a request to retry, or an outage to wait out."""
    connect, read = timeout
    fixes = FIXES
    if failure.cause is network.Cause.CONNECT_TIMEOUT:
        fixes = replace(fixes, timeouts=f"{connect:g}s, 'Connect timeout'")
    elif failure.cause is network.Cause.READ_TIMEOUT:
        fixes = replace(fixes, timeouts=f"{read:g}s, 'Read timeout', during {what}")
    message = network.explain(failure, "Plex", url, fixes)
    if failure.needs_setting:
        return PlexConnectionSetupError(message)
    if failure.transient:
        return TransientError(message)
    return PlexUnavailable(message)


def translate(exc: BaseException, what: str, session: RecordingSession | None = None, url: str = "",
              timeout: tuple[float, float] = (5.0, 30.0)) -> Stash2PlexError:
    """Map a plexapi or requests failure to our vocabulary; `what` names the request."""
    from plexapi.exceptions import BadRequest, NotFound, Unauthorized

    if isinstance(exc, Stash2PlexError):
        return exc
    failure = network.classify(exc)
    if failure is not None:
        return network_error(failure, url, what, timeout)
    if isinstance(exc, Unauthorized):
        return PlexAuthError(f"Plex refused the token (401) for {what}: check the Plex token setting")
    if isinstance(exc, NotFound):
        return PlexNotFound(f"Plex has no {what} (404)")
    if isinstance(exc, BadRequest):
        return _http_error(exc, what, session, url, timeout)
    return TransientError(f"Unexpected failure during {what}: {type(exc).__name__}: {exc}")


def _http_error(exc: Exception, what: str, session: RecordingSession | None, url: str,
                timeout: tuple[float, float]) -> Stash2PlexError:
    found = _STATUS.match(str(exc))
    status = int(found.group(1)) if found else (session.last_status if session else None) or 0
    headers = session.last_headers if session else {}
    disguised = network.from_status(status, str(exc))
    if disguised is not None:
        return network_error(disguised, url, what, timeout)
    if status == 429 or status >= 500:
        return TransientError(f"Plex answered {status} to {what}",
                              retry_after=parse_retry_after(headers.get("Retry-After")))
    return InvalidData(f"Plex rejected {what} ({status}): {str(exc)[:300]}")


def speaks_tls(url: str, timeout: float) -> bool:
    """Does the port of an http:// URL complete a TLS handshake? Plex with secure connections
    required closes a plain-HTTP connection without a word, which alone looks like a dropped
    connection; one handshake tells the wrong scheme apart. No request, no token is sent."""
    import socket
    import ssl

    parts = urlsplit(url)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=parts.hostname):
            return True
    except (OSError, ValueError):
        return False


def certificate_names(url: str, timeout: float) -> tuple[str, ...]:
    """The names (subjectAltName) on the certificate an https:// URL presents, for Health
    Check's advice when it does not verify. The first handshake only fetches the certificate;
    the second verifies it against itself, which is what makes the ssl module parse it."""
    import socket
    import ssl

    parts = urlsplit(url)
    where = (parts.hostname or "", parts.port or 443)
    fetch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    fetch.check_hostname = False
    fetch.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(where, timeout=timeout) as raw, fetch.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        if not der:
            return ()
        parse = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        parse.check_hostname = False
        parse.load_verify_locations(cadata=der)
        parse.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        with socket.create_connection(where, timeout=timeout) as raw, parse.wrap_socket(raw) as tls:
            names = tls.getpeercert().get("subjectAltName", ())
    except (OSError, ValueError):
        return ()
    return tuple(str(value) for _kind, value in names)


def machine_identifier(url: str, timeout: float) -> str | None:
    """Plex's `machineIdentifier` from `/identity`, which answers without a token; read
    without verifying, since it is asked only to name the server in advice."""
    import warnings
    from xml.etree import ElementTree

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            answer = requests.get(url.rstrip("/") + "/identity", timeout=timeout, verify=False)
        answer.raise_for_status()
        return ElementTree.fromstring(answer.content).get("machineIdentifier") or None
    except (requests.RequestException, ValueError, ElementTree.ParseError):
        return None


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


def _retry_after(state: RetryCallState) -> float | None:
    exc = state.outcome.exception() if state.outcome else None
    return getattr(exc, "retry_after", None)


class stop_on_long_retry_after(stop_base):
    """Stop at once when the server asks for a pause longer than a request should wait: the
    queue defers the job instead (`base.backoff.RETRY_AFTER_IN_REQUEST`)."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        hint = _retry_after(retry_state)
        return hint is not None and hint > RETRY_AFTER_IN_REQUEST


class wait_retry_after(wait_base):
    """The server's Retry-After when it gave one, else `fallback`."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        hint = _retry_after(retry_state)
        return hint if hint is not None else self.fallback(retry_state)


def _replayed(first: BaseException, attempt: Callable[[], Any]) -> Callable[[], Any]:
    """`attempt` whose first call fails with `first`, the failure already met: the retry loop
    starts from it, counting and waiting as if it had made that attempt itself."""
    pending = [first]

    def again() -> Any:
        if pending:
            raise pending.pop()
        return attempt()

    return again


def retrying(sleep: Sleep) -> Retrying:
    return Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(REQUEST_RETRIES + 1) | stop_on_long_retry_after(),
        wait=wait_retry_after(wait_exponential(multiplier=REQUEST_BACKOFF.base, max=REQUEST_BACKOFF.cap)),
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
        tls: bool | str = True,
    ) -> None:
        import time

        self.url = url.rstrip("/")
        self._token = token
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.sleep = sleep or time.sleep
        if tls is False:  # the user chose this; the warning is ours, once per run, not per request
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.session = RecordingSession(max_request_rate, clock=clock, sleep=self.sleep, tls=tls)
        self.identifier = client_identifier(data_dir) if data_dir is not None else None
        self._server: Any = None
        self._server_lock = threading.RLock()

    @property
    def requests_made(self) -> int:
        return self.session.count

    @property
    def requests_here(self) -> int:
        """Requests sent from the calling thread: what one sync cost, whatever the pool sent."""
        return self.session.count_here

    def hold(self, seconds: float) -> None:
        """A server's Retry-After: every request, from any thread, waits it out first."""
        self.session.hold(seconds)

    def server(self) -> Any:
        with self._server_lock:  # the pool's threads share the one PlexServer
            return self._server_once()

    def _server_once(self) -> Any:
        if self._server is None:
            if isinstance(self.session.tls, str) and not os.path.isfile(self.session.tls):
                # requests would say "invalid path" as an OSError, which reads like an outage.
                raise PlexConnectionSetupError(
                    f"{_setting('plex_ca_file')} is set to {self.session.tls}, which is not a file on the machine "
                    f"running Stash: give the path of a PEM file there, or clear it")
            if self.identifier:
                configure_plexapi(self.identifier)
            else:
                os.environ["PLEXAPI_PLEXAPI_AUTORELOAD"] = "false"
            from plexapi.server import PlexServer

            try:
                self._server = self._guarded(
                    "the server root (/)",
                    lambda: _plex_server(PlexServer(self.url, self._token, session=self.session, timeout=self.timeout)))
            except TransientError as exc:
                if self.url.startswith("http://") and speaks_tls(self.url, self.timeout[0]):
                    raise network_error(network.NetFailure(network.Cause.HTTP_TO_HTTPS), self.url,
                                        "the server root (/)", self.timeout) from exc
                raise
        return self._server

    def probe(self) -> None:
        """One cheap request that proves Plex answers: the server root when the connection is
        new (it is needed anyway), else `/identity`."""
        if self._server is None:
            self.server()
        else:
            self.query("/identity", what="the probe (/identity)")

    def query(self, key: str, method: str = "GET", *, headers: Mapping[str, str] | None = None,
              data: bytes | None = None, what: str | None = None, read: bool | None = None) -> Any:
        """`PlexServer.query` with translation and the transient retry; returns the XML root.

        `read` (default: a GET) says the caller reads the answer, so it must be Plex's XML;
        a GET that only asks for something (a folder scan) answers with an empty body.
        """
        server = self.server()
        verb = {"GET": self.session.get, "PUT": self.session.put, "POST": self.session.post,
                "DELETE": self.session.delete}[method]
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
                raise translate(exc, what, self.session, self.url, self.timeout) from exc

        try:
            return attempt()  # most requests succeed at once: no retry loop to set up
        except TransientError as first:
            return retrying(self.sleep)(_replayed(first, attempt))

    def close(self) -> None:
        self.session.close()


_SHARED: dict[tuple[str, str, bool | str], PlexConnection] = {}


def shared_connection(settings: Any, data_dir: Path | None) -> PlexConnection:
    """The process's one connection (and so one `PlexServer`) for these settings' server.

    A long-lived worker that built a new connection per job would repeat `GET /` and the
    section lookups every time; keyed by (url, token, certificate choice) so a changed setting
    gets a new one.
    """
    key = (settings.plex_url, settings.plex_token, settings.plex_tls)
    conn = _SHARED.get(key)
    if conn is None:
        conn = _SHARED[key] = PlexConnection(
            settings.plex_url, settings.plex_token, connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout, max_request_rate=settings.max_request_rate, data_dir=data_dir,
            tls=settings.plex_tls)
    return conn
