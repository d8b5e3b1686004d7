"""An emulated Plex Media Server on loopback, answering plexapi 4.18 the way real Plex does.

Tests point the real plexapi (and through it the plugin's Plex side) at this server, so
what it sends must be what real Plex sends: XML with empty attributes omitted, paged
listings that honour `X-Plex-Container-Start/Size` and always carry `totalSize`, tag lists
cut short in listings, 401/404/400 where Plex answers them (shared reference §4). The
rules of the library itself live in `emulators.plex_library`; this module is HTTP, auth,
fault injection and the request log tests count against.

Usage::

    with PlexEmulator() as plex:
        key = plex.add_item("/media/stash/a.mp4", title="A", genres=["x"])
        server = plexapi.server.PlexServer(plex.url, plex.token)
        plex.faults.error_burst(2)          # next two requests answer 503
        assert plex.count("PUT", rating_key=key) == 0
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.etree import ElementTree as ET

from emulators.listen import ResettableServer, listen
from emulators.plex_collections import (
    COLLECTION_FIELDS,
    COLLECTION_TYPE,
    Collection,
    CollectionStore,
    parse_uri,
)
from emulators.plex_library import (
    DEFAULT_DURATION_MS,
    DEFAULT_SECTIONS,
    DEFAULT_SIZE,
    IDENTIFIER,
    EditError,
    Item,
    PlexLibrary,
    RealShapes,
    UnknownItem,
    container,
    images_container,
    section_attrs,
    section_element,
    to_bytes,
)
from emulators.plex_watch import OWNER_ID, account_element, history_element
from emulators.tls import CertFiles, TlsServer, server_context

MACHINE_ID = "5f0c1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b"
VERSION = "1.41.3.9314-a0bfb8370"
XML_TYPE = "text/xml;charset=utf-8"
STATUS_TEXT = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
               500: "Internal Server Error", 503: "Service Unavailable"}
METADATA_RE = re.compile(r"^/library/(?:metadata|collections)/(\d+(?:,\d+)*)")
REDACTED = "<redacted>"
GARBLE_KINDS = ("truncated", "html", "empty")
HOLD_POLL = 0.02  # how often a held request looks at its hold's condition again


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it; `query` has the token redacted."""

    method: str
    path: str
    query: dict[str, str]
    rating_key: int | None
    status: int
    t: float
    rating_keys: tuple[int, ...] = ()
    body_size: int = 0


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = XML_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def xml(root: ET.Element) -> Response:
    return Response(200, to_bytes(root))


def error(status: int, headers: Mapping[str, str] | None = None) -> Response:
    """Plex answers errors with a small HTML page, not XML."""
    text = f"{status} {STATUS_TEXT.get(status, 'Error')}"
    body = f"<html><head><title>{text}</title></head><body><h1>{text}</h1></body></html>"
    return Response(status, body.encode(), "text/html", dict(headers or {}))


class Faults:
    """Switches tests flip to make the server misbehave; all take effect on the next request."""

    def __init__(self, emulator: PlexEmulator) -> None:
        self._emulator = emulator
        self.latency = 0.0
        self.revoked = False
        self._burst: list[int] = []
        self._limited: list[float] = []
        self._garbled: list[str] = []
        self._down = False
        self._hold: _Hold | None = None
        self._down_after: tuple[int, str] | None = None

    @property
    def down(self) -> bool:
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        """Down closes the listening socket and every open connection (connection refused);
        clearing it listens again on the same port."""
        value = bool(value)
        if value != self._down:
            self._down = value
            (self._emulator._stop_listening if value else self._emulator._start_listening)()

    def down_after(self, n: int, method: str = "PUT") -> None:
        """Plex goes away once `n` more `method` requests have come in: the next request of
        any kind is reset unanswered and the port stops listening, as when the server process
        dies. Counting requests instead of watching the clock puts the outage at the same
        point of a drain however slow the machine is (one client at a time, as a drain is)."""
        self._down_after = (n, method)

    def pass_down_after(self, method: str) -> bool:
        """Counts one arriving request; True if Plex must go away before answering it. Called
        under the emulator's lock."""
        if self._down_after is None:
            return False
        left, counted = self._down_after
        if left <= 0:
            self._down_after = None
            return True
        if method == counted:
            self._down_after = (left - 1, counted)
        return False

    @contextlib.contextmanager
    def holding(self, when: Callable[[], bool] = lambda: True, ceiling: float = 20.0,
                which: Callable[[str, str, Mapping[str, str]], bool] = lambda method, path, query: True,
                ) -> Iterator[None]:
        """Inside the block, requests get no answer while `when()` is true: Plex stalls, as it
        does while its database is busy. A held request goes on when the block ends or `when()`
        turns false.

        Tests use it to keep a plugin process in the middle of its work for exactly as long
        as they need (while other processes start, or until they kill it) instead of a latency
        meant to be long enough "on this machine". A held request waits `ceiling` seconds at
        most, below the plugin's 30 s read timeout, so a test failing inside the block does
        not turn into timeouts and a stuck teardown. `which(method, path, query)` picks the
        requests held (all, by default): one edit can be kept in flight while others pass."""
        hold = _Hold(when, threading.Event(), ceiling, which)
        self._hold = hold
        try:
            yield
        finally:
            self._hold = None
            hold.released.set()

    def wait_if_held(self, method: str, path: str, query: Mapping[str, str]) -> None:
        """Called by each request before it is answered, outside the emulator's lock."""
        hold = self._hold
        if hold is None or not hold.which(method, path, query):
            return
        deadline = time.monotonic() + hold.ceiling
        while hold.when() and not hold.released.wait(HOLD_POLL) and time.monotonic() < deadline:
            pass

    def error_burst(self, n: int, status: int = 503) -> None:
        self._burst.extend([status] * n)

    def rate_limit(self, n: int, retry_after: float = 1) -> None:
        self._limited.extend([retry_after] * n)

    def garble(self, n: int, kind: str) -> None:
        """The next `n` answers come with status 200 but are not Plex's XML: `truncated` (the
        real answer cut in half, as by a dropped proxy connection), `html` (a proxy's or
        captive portal's page) or `empty` (no body at all)."""
        if kind not in GARBLE_KINDS:
            raise ValueError(f"unknown garble kind {kind!r}; expected one of {GARBLE_KINDS}")
        self._garbled.extend([kind] * n)

    def garbled(self, response: Response) -> Response:
        """Applies one queued garble to an answer; called under the emulator's lock."""
        if not self._garbled:
            return response
        kind = self._garbled.pop(0)
        if kind == "empty":
            return Response(200, b"", response.content_type)
        if kind == "html":
            page = b"<html><head><title>Bad Gateway</title></head><body><h1>Proxy error</h1></body></html>"
            return Response(200, page, "text/html")
        return Response(200, response.body[: len(response.body) // 2], response.content_type)

    def clear_answers(self) -> None:
        """Drops the queued error, 429 and garbled answers not yet given: a moment of
        trouble that is over, however few requests came meanwhile."""
        self._burst.clear()
        self._limited.clear()
        self._garbled.clear()

    def revoke_token(self) -> None:
        self.revoked = True

    def restore_token(self) -> None:
        self.revoked = False

    def clear(self) -> None:
        self.latency = 0.0
        self.revoked = False
        self.clear_answers()
        self._down_after = None
        self.down = False

    def next_fault(self) -> Response | None:
        """Consumes one queued fault; called under the emulator's lock."""
        if self._burst:
            return error(self._burst.pop(0))
        if self._limited:
            retry_after = self._limited.pop(0)
            shown = int(retry_after) if float(retry_after).is_integer() else retry_after
            return error(429, {"Retry-After": str(shown)})
        return None


@dataclass(frozen=True)
class _Hold:
    when: Callable[[], bool]
    released: threading.Event
    ceiling: float
    which: Callable[[str, str, Mapping[str, str]], bool]


class _Server(ResettableServer, TlsServer, ThreadingHTTPServer):
    """Resets kept-alive connections when going down; serves HTTPS when the emulator has a
    certificate."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: PlexEmulator) -> None:
        self.emulator = emulator
        if emulator.tls is not None:
            self.tls_context = server_context(emulator.tls)
            self.plain_http_answer = emulator.plain_http_answer
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Plex and requests' pool expect
    # Headers and body leave in separate writes; with Nagle on, a keep-alive client's
    # delayed ACK holds every answer ~40 ms, which would be the emulator's cost, not ours.
    disable_nagle_algorithm = True
    server: _Server

    def _dispatch(self) -> None:
        try:
            self.server.emulator._serve(self)
        except (ConnectionError, OSError):
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is the record tests read."""


Route = Callable[..., Response]


class PlexEmulator:
    """A Plex Media Server on 127.0.0.1 with a mutable library, faults and a request log."""

    def __init__(self, token: str = "test-token", *, sections: Iterable[tuple[Any, ...]] = DEFAULT_SECTIONS,
                 listing_limits: Mapping[str, int] | None = None, friendly_name: str = "Emulated Plex",
                 machine_identifier: str = MACHINE_ID, version: str = VERSION,
                 fetch_url: Callable[[str], bytes] | None = None, shapes: RealShapes | None = None,
                 tls: CertFiles | None = None, plain_http_answer: bytes | None = None,
                 latency: float = 0.0, sleep: Callable[[float], None] = time.sleep, port: int = 0) -> None:
        """`latency`: seconds every request waits before it is answered, the round trip of a
        network between plugin and server (a NAS, a Docker bridge). Unlike `faults.latency`
        it is part of the set-up and survives `faults.clear()`. The wait runs in the
        request's own thread and holds no lock, so other connections are served meanwhile,
        as on a real network. `sleep` is how it waits (injected by tests).
        `port`: 0 takes a free one; a fixed port outside the range the OS hands out to
        outgoing connections keeps a restart (`faults.down`) from finding its port taken by
        a client's connection meanwhile, as a real server's configured port never is."""
        self.token = token
        self.tls = tls
        self.plain_http_answer = plain_http_answer
        self.friendly_name = friendly_name
        self.machine_identifier = machine_identifier
        self.version = version
        self.library = PlexLibrary(sections, listing_limits=listing_limits, now=int(time.time()), shapes=shapes)
        self.collections = CollectionStore(self.library)
        self.faults = Faults(self)
        self.requests: list[RequestRecord] = []
        self.fetch_url = fetch_url or _fetch_url
        self.latency = latency
        self._sleep = sleep
        self.lock = threading.RLock()
        self.port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, re.Pattern[str], Route]] = [
            ("GET", re.compile(r"/"), self._root),
            ("GET", re.compile(r"/identity"), self._identity),
            ("GET", re.compile(r"/library"), self._library),
            ("GET", re.compile(r"/library/sections"), self._sections),
            ("GET", re.compile(r"/library/sections/(\d+)/all"), self._listing),
            ("PUT", re.compile(r"/library/sections/(\d+)/all"), self._edit),
            ("GET", re.compile(r"/library/sections/(\d+)/refresh"), self._scan),
            ("GET", re.compile(r"/library/sections/(\d+)/collections"), self._section_collections),
            ("POST", re.compile(r"/library/collections"), self._create_collection),
            ("GET", re.compile(r"/library/collections/(\d+)"), self._collection),
            ("DELETE", re.compile(r"/library/collections/(\d+)"), self._delete_collection),
            ("GET", re.compile(r"/library/collections/(\d+)/(?:children|items)"), self._collection_children),
            ("PUT", re.compile(r"/library/collections/(\d+)/items"), self._collection_add),
            ("DELETE", re.compile(r"/library/collections/(\d+)/items/(\d+)"), self._collection_remove),
            ("PUT", re.compile(r"/library/collections/(\d+)/items/(\d+)/move"), self._collection_move),
            ("PUT", re.compile(r"/library/(?:collections|metadata)/(\d+)/prefs"), self._collection_prefs),
            ("DELETE", re.compile(r"/library/metadata/(\d+)"), self._delete_metadata),
            ("GET", re.compile(r"/library/metadata/(\d+(?:,\d+)*)"), self._metadata),
            ("PUT", re.compile(r"/library/metadata/(\d+)/refresh"), self._refresh),
            ("PUT", re.compile(r"/:/rate"), self._rate),
            ("GET", re.compile(r"/library/metadata/(\d+)/(posters|arts)"), self._images),
            ("POST", re.compile(r"/library/metadata/(\d+)/(posters|arts)"), self._upload),
            ("PUT", re.compile(r"/library/metadata/(\d+)/(poster|art)"), self._select),
            ("GET", re.compile(r"/library/metadata/(\d+)/(thumb|art)(?:/(\d+))?"), self._image_bytes),
            ("GET", re.compile(r"/status/sessions/history/all"), self._history),
            ("GET", re.compile(r"/accounts"), self._accounts),
        ]

    # -------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> PlexEmulator:
        self._start_listening()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._stop_listening()

    def __enter__(self) -> PlexEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_listening(self) -> None:
        self._httpd = listen(lambda: _Server(("127.0.0.1", self.port), self), self.port)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"plex-emulator-{self.port}", daemon=True)
        self._thread.start()

    def _stop_listening(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.reset_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -------------------------------------------------------- test helpers

    def add_item(self, file: str, *, section: int | None = None, title: str | None = None,
                 size: int = DEFAULT_SIZE, duration_ms: int = DEFAULT_DURATION_MS,
                 **fields_and_tags: Any) -> int:
        """A scanned item; returns its ratingKey. See PlexLibrary.add_item for keywords."""
        now = int(time.time())
        with self.lock:
            key = self.library.add_item(file, now=now, section=section, title=title,
                                        size=size, duration_ms=duration_ms, **fields_and_tags)
            self.collections.adopt([key], now)
            return key

    def add_pending(self, file: str, *, section: int | None = None, title: str | None = None,
                    size: int = DEFAULT_SIZE, duration_ms: int = DEFAULT_DURATION_MS, **extra: Any) -> None:
        """A file on disk that only becomes an item after a scan of its section or folder."""
        with self.lock:
            self.library.add_pending(file, section=section, title=title, size=size,
                                     duration_ms=duration_ms, **extra)

    def add_version(self, folder: str, profile: str = "Optimized for TV", file: str | None = None) -> int:
        """Plex's optimised copy of the item in `folder` (see PlexLibrary.add_version)."""
        with self.lock:
            return self.library.add_version(folder, profile, file, now=int(time.time()))

    def user_edit(self, rating_key: int, locks: Iterable[str] = (), **values: Any) -> None:
        """What a person does in Plex Web: edit values (locked by the edit under
        `RealShapes.web_edits_lock`) and lock fields by hand (`locks`, e.g. "genre")."""
        params = {f"{name}.value": "" if value is None else str(value) for name, value in values.items()}
        params.update({f"{name}.locked": "1" for name in locks})
        now = int(time.time())
        with self.lock:
            item = self.library.item(rating_key)
            self.library.edit(item.section, [rating_key], params, now=now)
            self.collections.adopt([rating_key], now)

    def play(self, rating_key: int, at: float, account: int = OWNER_ID) -> int:
        """Someone watched the item to the end at `at`; returns the history row's id."""
        with self.lock:
            item = self.library.item(rating_key)
            return self.library.watch.play(rating_key, section=item.section, title=str(item.title or ""),
                                           at=int(at), account=account)

    def progress(self, rating_key: int, offset_ms: int, at: float, account: int = OWNER_ID) -> None:
        """Someone stopped watching the item `offset_ms` in, at `at`."""
        with self.lock:
            self.library.item(rating_key)
            self.library.watch.progress(rating_key, offset_ms, at=int(at), account=account)

    def add_account(self, name: str) -> int:
        """A managed user of this server; returns its account id."""
        with self.lock:
            return self.library.watch.add_account(name)

    def add_collection(self, title: str, keys: Iterable[int] = (), *, section: int | None = None,
                       **fields: Any) -> int:
        """A collection made in Plex (through the API or Plex Web), holding `keys` in that
        order; `fields` are summary=, titleSort=, contentRating=. Returns its ratingKey."""
        unknown = set(fields) - COLLECTION_FIELDS
        if unknown:
            raise TypeError(f"add_collection() got unexpected keywords {sorted(unknown)}")
        now = int(time.time())
        with self.lock:
            home = section if section is not None else next(iter(self.library.sections))
            collection = self.collections.create(home, title, keys, now)
            collection.fields.update({k: v for k, v in fields.items() if v is not None})
            return collection.rating_key

    def collection(self, rating_key: int) -> Collection:
        with self.lock:
            return self.collections.get(rating_key)

    def collection_by_title(self, title: str, section: int | None = None) -> Collection | None:
        with self.lock:
            home = section if section is not None else next(iter(self.library.sections))
            return self.collections.by_title(home, title)

    def collection_children(self, rating_key: int) -> list[int]:
        """The members' rating keys in the order Plex lists them (its collectionSort)."""
        with self.lock:
            return self.collections.children(self.collections.get(rating_key))

    def remove_item(self, rating_key: int) -> None:
        with self.lock:
            self.library.remove_item(rating_key)

    def item(self, rating_key: int) -> Item:
        with self.lock:
            return self.library.item(rating_key)

    def item_by_file(self, file: str) -> Item | None:
        with self.lock:
            return self.library.item_by_file(file)

    def count(self, method: str | None = None, path: str | re.Pattern[str] | None = None,
              rating_key: int | None = None) -> int:
        """Requests matching all the given criteria. A string `path` matches as a prefix or,
        failing that, as a full regular expression; a compiled pattern must match fully."""
        with self.lock:
            records = list(self.requests)
        return sum(1 for r in records if _matches(r, method, path, rating_key))

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()

    # -------------------------------------------------------- serving

    def _serve(self, handler: _Handler) -> None:
        received = time.time()
        split = urlsplit(handler.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            goes_down = self.faults.pass_down_after(handler.command)
        if goes_down:
            self.faults.down = True  # resets this connection too: the request is never answered
            handler.close_connection = True
            return
        self.faults.wait_if_held(handler.command, path, query)
        delay = self.latency + self.faults.latency
        if delay:
            self._sleep(delay)
        with self.lock:
            response = self.faults.garbled(self._respond(handler.command, path, query, handler.headers, body))
            keys = _rating_keys(path, query)
            self.requests.append(RequestRecord(
                method=handler.command, path=path, query=_redact(query),
                rating_key=keys[0] if keys else None, status=response.status, t=received,
                rating_keys=keys, body_size=len(body)))
        handler.send_response(response.status)
        handler.send_header("Content-Type", response.content_type)
        handler.send_header("Content-Length", str(len(response.body)))
        handler.send_header("X-Plex-Protocol", "1.0")
        for name, value in response.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(response.body)

    def _respond(self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str],
                 body: bytes) -> Response:
        fault = self.faults.next_fault()
        if fault is not None:
            return fault
        token = headers.get("X-Plex-Token") or query.get("X-Plex-Token")
        if (self.faults.revoked or token != self.token) and (method, path) != ("GET", "/identity"):
            # /identity answers without a token on real Plex: clients use it to tell servers apart.
            return error(401)
        route_path = path.rstrip("/") or "/"
        for route_method, pattern, route in self._routes:
            match = pattern.fullmatch(route_path)
            if match is not None and route_method == method:
                try:
                    return route(*match.groups(), query=query, headers=headers, body=body)
                except UnknownItem:
                    return error(404)
                except EditError:
                    return error(400)
        return error(404)

    # -------------------------------------------------------- routes

    def _root(self, **_: Any) -> Response:
        return xml(container(
            size=0, allowCameraUpload=0, allowChannelAccess=1, allowMediaDeletion=1, allowSharing=1,
            allowSync=1, backgroundProcessing=1, certificate=0, companionProxy=1, countryCode="usa",
            diagnostics="logs,databases,streaminglogs", eventStream=1, friendlyName=self.friendly_name,
            hubSearch=1, itemClusters=1, livetv=7, machineIdentifier=self.machine_identifier,
            mediaProviders=1, multiuser=1, myPlex=0, offlineTranscode=1, platform="Linux",
            platformVersion="6.1", pluginHost=1, readOnlyLibraries=0, streamingBrainVersion=2,
            sync=1, transcoderActiveVideoSessions=0, transcoderAudio=1, transcoderLyrics=1,
            transcoderPhoto=1, transcoderSubtitles=1, transcoderVideo=1, updatedAt=self.library.updated_at,
            updater=1, version=self.version, voiceSearch=1))

    def _identity(self, **_: Any) -> Response:
        return xml(container(size=0, claimed=1, machineIdentifier=self.machine_identifier,
                             version=self.version))

    def _library(self, **_: Any) -> Response:
        root = container(size=3, allowSync=0, art="/:/resources/library-art.png", content="1",
                         identifier=IDENTIFIER, mediaTagPrefix="/system/bundle/media/flags/",
                         mediaTagVersion=1700000000, title1="Plex Library", title2="")
        for key, title in (("sections", "Library Sections"), ("recentlyAdded", "Recently Added Content"),
                           ("onDeck", "On Deck Content")):
            ET.SubElement(root, "Directory", {"key": key, "title": title})
        return xml(root)

    def _sections(self, **_: Any) -> Response:
        sections = self.library.sections.values()
        root = container(size=len(sections), allowSync=0, identifier=IDENTIFIER,
                         mediaTagPrefix="/system/bundle/media/flags/", mediaTagVersion=1700000000,
                         title1="Plex Library")
        for section in sections:
            root.append(section_element(section, self.library.updated_at))
        return xml(root)

    def _listing(self, section_key: str, *, query: dict[str, str], headers: Mapping[str, str],
                 **_: Any) -> Response:
        section = self.library.section(int(section_key))
        if query.get("type") == str(COLLECTION_TYPE):
            return self._section_collections(section_key, query=query, headers=headers)
        start = _int_param("X-Plex-Container-Start", headers, query, 0)
        size = _int_param("X-Plex-Container-Size", headers, query, None)
        viewed = query.get("lastViewedAt>>")
        items, total = self.library.listing(section.key, start, size, file=query.get("file"),
                                            title=query.get("title"), type=query.get("type"),
                                            viewed_after=int(viewed) if viewed and viewed.isdigit() else None)
        root = container(size=len(items), totalSize=total, offset=start, allowSync=1,
                         art=f"/:/resources/{section.type}-fanart.jpg", identifier=IDENTIFIER,
                         **section_attrs(section), mediaTagPrefix="/system/bundle/media/flags/",
                         mediaTagVersion=1700000000, thumb=f"/:/resources/{section.type}.png",
                         title1=section.title, title2="All Movies" if section.type == "movie" else "All",
                         viewGroup=section.type, viewMode=65592)
        for item in items:
            root.append(self.library.item_element(item, full=False))
        return xml(root)

    def _metadata(self, keys: str, **_: Any) -> Response:
        """Full items and collections; include parameters (includeChapters=1 …) are
        accepted and ignored."""
        found = [self.library.items.get(int(k)) or self.library.collections.get(int(k)) for k in keys.split(",")]
        entries = [e for e in found if e is not None]
        if not entries:
            return error(404)
        section = self.library.sections[entries[0].section]
        root = container(size=len(entries), allowSync=1, identifier=IDENTIFIER, **section_attrs(section),
                         mediaTagPrefix="/system/bundle/media/flags/", mediaTagVersion=1700000000)
        for entry in entries:
            root.append(self.collections.element(entry, full=True) if isinstance(entry, Collection)
                        else self.library.item_element(entry, full=True))
        return xml(root)

    def _edit(self, section_key: str, *, query: dict[str, str], **_: Any) -> Response:
        ids = query.get("id", "")
        try:
            keys = [int(k) for k in ids.split(",") if k]
        except ValueError:
            return error(400)
        now = int(time.time())
        if query.get("type") == str(COLLECTION_TYPE):
            self.collections.edit(int(section_key), keys, query, now, lock_edits=self.library.shapes.web_edits_lock)
            return Response(200)
        self.library.edit(int(section_key), keys, query, now=now)
        self.collections.adopt(keys, now)
        return Response(200)

    def _scan(self, section_key: str, *, query: dict[str, str], **_: Any) -> Response:
        """Real Plex scans in the background after answering; here the scan is done by then."""
        now = int(time.time())
        self.collections.adopt(self.library.scan(int(section_key), query.get("path") or None, now=now), now)
        return Response(200)

    def _rate(self, *, query: dict[str, str], **_: Any) -> Response:
        """plexapi's `rate()`. A library item needs `identifier=com.plexapp.plugins.library`;
        without it, or with a key that is not a number, 400 (belief: unverified)."""
        if query.get("identifier") != IDENTIFIER or not query.get("key", "").isdigit():
            return error(400)
        self.library.rate(int(query["key"]), query.get("rating", ""), now=int(time.time()))
        return Response(200)

    def _refresh(self, rating_key: str, **_: Any) -> Response:
        self.library.refresh(int(rating_key), now=int(time.time()))
        return Response(200)

    def _images(self, rating_key: str, kind: str, **_: Any) -> Response:
        item = self.library.imaged(int(rating_key))
        return xml(images_container(item, "thumb" if kind == "posters" else "art"))

    def _upload(self, rating_key: str, kind: str, *, query: dict[str, str], body: bytes, **_: Any) -> Response:
        """Raw bytes in the body, or `?url=` that Plex fetches itself (a failed fetch is a
        500 here: the real answer is unverified)."""
        self.library.imaged(int(rating_key))
        url = query.get("url")
        data: bytes | None = body or None
        if url and not data:
            try:
                data = self.fetch_url(url)
            except OSError:
                return error(500)
        self.library.upload(int(rating_key), "thumb" if kind == "posters" else "art", data, url,
                            now=int(time.time()))
        return Response(200)

    def _select(self, rating_key: str, kind: str, *, query: dict[str, str], **_: Any) -> Response:
        self.library.select(int(rating_key), "thumb" if kind == "poster" else "art", query.get("url", ""),
                            now=int(time.time()))
        return Response(200)

    def _history(self, *, query: dict[str, str], headers: Mapping[str, str], **_: Any) -> Response:
        """The play history plexapi's `history()` pages through, `totalSize` on every page."""
        for name in ("accountID", "librarySectionID", "metadataItemID", "viewedAt>"):
            if query.get(name) and not query[name].lstrip("-").isdigit():
                return error(400)
        rows = self.library.watch.history(query)
        start, page = _page(rows, headers, query)
        root = container(size=len(page), totalSize=len(rows), offset=start)
        for play in page:
            root.append(history_element(play))
        return xml(root)

    def _accounts(self, **_: Any) -> Response:
        accounts = self.library.watch.accounts
        root = container(size=len(accounts), identifier="com.plexapp.system.accounts")
        for account_id, name in sorted(accounts.items()):
            root.append(account_element(account_id, name))
        return xml(root)

    # -------------------------------------------------------- collections

    def _section_collections(self, section_key: str, *, query: dict[str, str], headers: Mapping[str, str],
                             **_: Any) -> Response:
        """`/library/sections/<s>/collections` and `/all?type=18` (what section.collections()
        sends): a paged listing of Directory elements, `totalSize` on every page."""
        section = self.library.section(int(section_key))
        found = self.collections.in_section(section.key, query.get("title"))
        start, page = _page(found, headers, query)
        root = container(size=len(page), totalSize=len(found), offset=start, allowSync=0,
                         art=f"/:/resources/{section.type}-fanart.jpg", identifier=IDENTIFIER,
                         **section_attrs(section), mediaTagPrefix="/system/bundle/media/flags/",
                         mediaTagVersion=1700000000, thumb=f"/:/resources/{section.type}.png",
                         title1=section.title, title2="Collections", viewGroup="collection")
        for collection in page:
            root.append(self.collections.element(collection, full=False))
        return xml(root)

    def _create_collection(self, *, query: dict[str, str], **_: Any) -> Response:
        """plexapi's createCollection. Smart collections are not modelled (400)."""
        if query.get("smart", "0") != "0" or not query.get("sectionId", "").isdigit():
            return error(400)
        keys = parse_uri(query["uri"], self.machine_identifier) if query.get("uri") else []
        collection = self.collections.create(int(query["sectionId"]), query.get("title", ""), keys,
                                             int(time.time()), type=query.get("type"))
        return self._collection_container(collection)

    def _collection_container(self, collection: Collection, preferences: bool = False) -> Response:
        section = self.library.sections[collection.section]
        root = container(size=1, allowSync=1, identifier=IDENTIFIER, **section_attrs(section),
                         mediaTagPrefix="/system/bundle/media/flags/", mediaTagVersion=1700000000)
        root.append(self.collections.element(collection, full=True, preferences=preferences))
        return xml(root)

    def _collection(self, rating_key: str, *, query: dict[str, str], **_: Any) -> Response:
        """A collection by its own key, which plexapi reloads and reads preferences from."""
        collection = self.collections.get(int(rating_key))
        return self._collection_container(collection, preferences=query.get("includePreferences") == "1")

    def _collection_children(self, rating_key: str, *, query: dict[str, str], headers: Mapping[str, str],
                             **_: Any) -> Response:
        collection = self.collections.get(int(rating_key))
        keys = self.collections.children(collection)
        start, page = _page(keys, headers, query)
        section = self.library.sections[collection.section]
        root = container(size=len(page), totalSize=len(keys), offset=start, allowSync=1,
                         identifier=IDENTIFIER, **section_attrs(section), key=collection.rating_key,
                         mediaTagPrefix="/system/bundle/media/flags/", mediaTagVersion=1700000000,
                         title1=section.title, title2=collection.title, viewGroup=section.type)
        for key in page:
            root.append(self.library.item_element(self.library.items[key], full=False))
        return xml(root)

    def _collection_add(self, rating_key: str, *, query: dict[str, str], **_: Any) -> Response:
        self.collections.get(int(rating_key))
        if not query.get("uri"):
            return error(400)
        self.collections.add(int(rating_key), parse_uri(query["uri"], self.machine_identifier), int(time.time()))
        return self._collection_container(self.collections.get(int(rating_key)))

    def _collection_remove(self, rating_key: str, item_key: str, **_: Any) -> Response:
        self.collections.remove(int(rating_key), int(item_key), int(time.time()))
        return Response(200)

    def _collection_move(self, rating_key: str, item_key: str, *, query: dict[str, str], **_: Any) -> Response:
        after = query.get("after")
        if after is not None and not after.isdigit():
            return error(400)
        self.collections.move(int(rating_key), int(item_key), int(after) if after else None, int(time.time()))
        return Response(200)

    def _collection_prefs(self, rating_key: str, *, query: dict[str, str], **_: Any) -> Response:
        self.collections.set_prefs(int(rating_key), query, int(time.time()))
        return Response(200)

    def _delete_collection(self, rating_key: str, **_: Any) -> Response:
        self.collections.delete(int(rating_key))
        return Response(200)

    def _delete_metadata(self, rating_key: str, **_: Any) -> Response:
        """A collection is deleted; deleting media is off by default in Plex, which answers
        400 (plexapi's delete() reads a BadRequest as "deletion not allowed")."""
        key = int(rating_key)
        if key in self.library.collections:
            self.collections.delete(key)
            return Response(200)
        self.library.item(key)
        return error(400)

    def _image_bytes(self, rating_key: str, kind: str, stamp: str | None, **_: Any) -> Response:
        image = self.library.image(int(rating_key), kind, int(stamp) if stamp else None)
        if image is None or not image.data:
            return error(404)
        return Response(200, image.data, _image_type(image.data))


def _fetch_url(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read()


def _image_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"GIF8"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def _int_param(name: str, headers: Mapping[str, str], query: Mapping[str, str], default: int | None) -> int | None:
    raw = headers.get(name) or query.get(name)
    try:
        return max(0, int(raw)) if raw not in (None, "") else default
    except ValueError:
        return default


def _page(rows: list[Any], headers: Mapping[str, str], query: Mapping[str, str]) -> tuple[int, list[Any]]:
    """The start and the rows of one page under `X-Plex-Container-Start/Size`."""
    start = _int_param("X-Plex-Container-Start", headers, query, 0) or 0
    size = _int_param("X-Plex-Container-Size", headers, query, None)
    return start, rows[start:] if size is None else rows[start:start + size]


def _rating_keys(path: str, query: Mapping[str, str]) -> tuple[int, ...]:
    """Which items a request is about: a metadata path, or an edit's `id=` list."""
    match = METADATA_RE.match(path)
    if match is not None:
        return tuple(int(k) for k in match.group(1).split(","))
    if path == "/:/rate" and query.get("key", "").isdigit():
        return (int(query["key"]),)
    if path.rstrip("/").endswith("/all") and "id" in query:
        try:
            return tuple(int(k) for k in query["id"].split(",") if k)
        except ValueError:
            return ()
    return ()


def _redact(query: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k == "X-Plex-Token" else v) for k, v in query.items()}


def _matches(record: RequestRecord, method: str | None, path: str | re.Pattern[str] | None,
             rating_key: int | None) -> bool:
    if method is not None and record.method != method.upper():
        return False
    if rating_key is not None and rating_key not in record.rating_keys:
        return False
    if path is None:
        return True
    if isinstance(path, re.Pattern):
        return path.fullmatch(record.path) is not None
    if record.path.startswith(path):
        return True
    try:
        return re.fullmatch(path, record.path) is not None
    except re.error:
        return False
