"""The Stash façade: stashapi underneath, our records and error classes on top.

Only this module talks to Stash. It turns transport and GraphQL failures into
`StashUnavailable`/`StashAuthError`/`StashRejectedQuery` at the edge and GraphQL answers
into `stash.records`, so callers never depend on stashapi's behaviour or the answer's shape.

Stash over HTTPS (`server_connection.Scheme` = https) serves `stash.crt` from its config
folder, usually self-signed and made for a name, while the plugin reaches it at the address
Stash listens on (127.0.0.1 for 0.0.0.0). Settings cannot help here: they are read from
Stash over this very connection. So when that file is where Stash keeps it, the plugin
trusts exactly that certificate (its SHA-256 fingerprint, checked by urllib3 instead of the
CA and host name); otherwise it verifies as requests does.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from base import http_session, network
from base.errors import SceneGone, StashAuthError, StashRejectedQuery, StashUnavailable
from base.protocol import StashLog
from base.settings import PLUGIN_ID, plugin_settings_map
from base.unicode_forms import name_forms, nfc
from stash import queries
from stash.records import GroupLink, Performer, Scene, SceneFile, Studio

PAGE_SIZE = 200
#: Scenes `iter_listing` read last, kept with Stash's answer for each, so `find_scenes` hands
#: a job's listed scene back as the very object the listing made (`plex.scene_state`): about
#: three of Sync All's listing pages, the distance between its listing and its drain.
LISTED_KEPT = 160
#: Where Stash keeps the certificate it serves over HTTPS, in its config folder.
STASH_CERT = "stash.crt"
FIXES = network.Fixes(url="the address Stash gave the plugin (Stash's host and port settings)",
                      tls=f"Keep the certificate Stash serves as {STASH_CERT} in Stash's config folder, "
                          "where Stash2Plex trusts it")
#: What a GraphQL server says about a field or argument its schema does not have (gqlgen
#: quotes the name with ", graphql-js and graphql-core with ').
_UNKNOWN_FIELD = re.compile(r"""(?:Cannot query field|Unknown argument|Unknown field|Field) ["'](?P<name>[^"']+)["']""")


def certificate_pin(server_connection: Mapping[str, Any]) -> str | None:
    """SHA-256 fingerprint of Stash's own `stash.crt` when Stash speaks HTTPS, else None."""
    import hashlib
    import ssl
    from pathlib import Path

    folder = server_connection.get("Dir")
    if str(server_connection.get("Scheme") or "").lower() != "https" or not folder:
        return None
    try:
        pem = (Path(folder) / STASH_CERT).read_text(encoding="ascii")
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    except (OSError, ValueError):
        return None


def _pinned_interface(pin: str) -> Any:
    """stashapi's interface with every HTTPS request checked against `pin`.

    stashapi makes its session inside its constructor and sends the first query from there,
    so the adapter is mounted as the session is assigned."""
    from requests.adapters import HTTPAdapter
    from stashapi.stashapp import StashInterface

    class PinnedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["assert_fingerprint"] = pin
            super().init_poolmanager(*args, **kwargs)

        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            # The pin replaces the CA and host-name checks; passed per request because
            # REQUESTS_CA_BUNDLE would otherwise override a session's own choice.
            kwargs["verify"] = False
            return super().send(request, **kwargs)

    class PinnedInterface(StashInterface):  # type: ignore[misc]
        @property
        def s(self) -> Any:
            return self._pinned_session

        @s.setter
        def s(self, session: Any) -> None:
            session.mount("https://", PinnedAdapter())
            self._pinned_session = session

    return PinnedInterface


# stashapi logs each GraphQL error as "<code>:<path> <message>" before it raises a bare
# "<status> <reason> query failed" (classes.py _handle_GQL_response).
_GQL_ERROR_LINE = re.compile(r"^[A-Z_]+:(?:\[[^\]]*\])?\s*(?P<message>.+)$")


class _QuietLogger:
    """stashapi logs every failure at error level itself; we report one line of our own instead.

    It keeps the GraphQL error messages of the current call: stashapi's exception carries
    only the HTTP status, and "database is locked" is the part a user needs to read.
    """

    def __init__(self, log: StashLog) -> None:
        self._log = log
        self._local = threading.local()  # per thread: the drain downloads images from a small pool

    @property
    def graphql_errors(self) -> list[str]:
        errors = getattr(self._local, "errors", None)
        if errors is None:
            errors = self._local.errors = []
        return errors

    def _debug(self, msg: object, *args: object, **kwargs: object) -> None:
        self._log.debug(f"stashapi: {msg}")

    def error(self, msg: object, *args: object, **kwargs: object) -> None:
        match = _GQL_ERROR_LINE.match(str(msg))
        if match:
            self.graphql_errors.append(match.group("message"))
        self._debug(msg)

    debug = info = warning = trace = progress = _debug


class StashClient:
    """One connection to Stash for the life of a process."""

    def __init__(self, server_connection: Mapping[str, Any], log: StashLog) -> None:
        self._conn = dict(server_connection)
        self._log = log
        self._stashapi_log = _QuietLogger(log)
        self._api = None
        self._listed: OrderedDict[int, tuple[Mapping[str, Any], Scene]] = OrderedDict()
        self._listed_lock = threading.Lock()

    @property
    def url(self) -> str:
        scheme = self._conn.get("Scheme") or "http"
        host = self._conn.get("Host") or "localhost"
        host = "127.0.0.1" if host == "0.0.0.0" else host
        return f"{scheme}://{host}:{self._conn.get('Port') or 9999}"

    def _interface(self) -> Any:
        if self._api is None:
            from stashapi.stashapp import StashInterface

            conn = dict(self._conn, Logger=self._stashapi_log)
            pin = certificate_pin(self._conn)
            interface = StashInterface if pin is None else _pinned_interface(pin)
            # force_api_key: the session cookie Stash gives us expires after an hour, and a
            # background worker may outlive it. We never mutate scenes, so losing the
            # cookie's hook-loop protection costs nothing.
            self._api = self._call(lambda: interface(conn, force_api_key=True))
            http_session.settle(self._api.s)
        return self._api

    def _call(self, fn: Any) -> Any:
        import requests

        self._stashapi_log.graphql_errors.clear()
        try:
            return fn()
        except requests.exceptions.RequestException as exc:
            failure = network.classify(exc) or network.NetFailure(network.Cause.OTHER, type(exc).__name__)
            raise StashUnavailable(f"Cannot reach Stash: {network.explain(failure, 'Stash', self.url, FIXES)}.") from None
        except Exception as exc:
            text = str(exc)
            if text.startswith("401"):
                raise StashAuthError(
                    f"Stash at {self.url} refused our credentials (401): the session may have expired; "
                    "run the task again from Stash."
                ) from None
            errors = self._stashapi_log.graphql_errors
            detail = f": {errors[0]}" if errors else ""
            if text.startswith("422"):
                raise self._rejected(errors) from None
            if text[:3].isdigit() and text[0] in "45":
                status = text.split(" query failed")[0]
                raise StashUnavailable(f"Stash at {self.url} answered {status}{detail}.") from None
            if text.startswith("200 "):
                # HTTP 200 with `errors`: a resolver failed (a locked database, a closed
                # connection). Stash itself is in trouble for a while; not our bug.
                raise StashUnavailable(f"Stash at {self.url} could not answer the query{detail}.") from None
            raise

    def _rejected(self, errors: list[str]) -> StashRejectedQuery:
        """422: Stash could not validate our document, which happens when it is older than the
        fields we ask for. Said with the version and the field, since updating Stash is the fix."""
        version = getattr(self._api, "version", None)
        found = next((m.group("name") for m in map(_UNKNOWN_FIELD.search, errors) if m), None)
        what = f"the field '{found}'" if found else "a query"
        said = f" ({errors[0]})" if errors else ""
        return StashRejectedQuery(
            f"Stash {version or '(version unknown)'} at {self.url} rejected {what} that Stash2Plex sends "
            f"(422){said}: this Stash is older than Stash2Plex needs; update Stash.")

    def gql(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        api = self._interface()
        return self._call(lambda: api.call_GQL(document, variables or {}))

    def plugin_settings(self, plugin_id: str = PLUGIN_ID) -> dict[str, Any]:
        """Our stored settings; Stash before v0.26 lower-cased the plugin id."""
        data = self.gql(queries.PLUGIN_CONFIG, {"include": [plugin_id, plugin_id.lower()]})
        return plugin_settings_map(data["configuration"]["plugins"], plugin_id)

    def find_scene(self, scene_id: int) -> Scene:
        """The scene as Stash has it now; SceneGone if it was deleted."""
        data = self.gql(queries.FIND_SCENE, {"id": str(scene_id)})
        raw = data.get("findScene")
        if raw is None:
            raise SceneGone(f"Scene {scene_id} no longer exists in Stash.")
        return scene_from_gql(raw)

    def find_scenes(self, ids: Iterable[int], listed: Mapping[int, Mapping[str, Any]] | None = None,
                    ) -> dict[int, Scene | Exception]:
        """Many scenes as Stash has them now, in at most two requests; SceneGone for each
        deleted one, and a scene Stash answers in a shape we cannot read fails alone.

        `listed`: scenes a listing already read (Stash's answer, as `iter_listing` gives it).
        Those are only checked: one request for their `updated_at` and the studio, performers,
        tags and groups they show (renamed without the scene changing), and only those that
        changed since are read again in full. So the newest Stash state wins either way.
        """
        wanted = list(dict.fromkeys(int(i) for i in ids))
        listed = listed or {}
        out: dict[int, Scene | Exception] = {}
        full = [i for i in wanted if i not in listed]
        checked = [i for i in wanted if i in listed]
        if checked:
            stamps = {int(raw["id"]): raw for raw in self._by_ids(queries.SCENE_STAMPS, checked)}
            for i in checked:
                if i not in stamps:
                    continue  # deleted since the listing: said below, like any missing scene
                now_, then = stamps[i], listed[i]
                if now_.get("updated_at") and all(now_.get(k) == then.get(k) for k in ("updated_at", *queries.RELATED)):
                    out[i] = self._listed_scene(i, then)
                else:
                    full.append(i)
        if full:
            for raw in self._by_ids(queries.SCENES_BY_ID, full):
                out[int(raw["id"])] = _parsed(raw)
        for i in wanted:
            out.setdefault(i, SceneGone(f"Scene {i} no longer exists in Stash."))
        return out

    def _listed_scene(self, scene_id: int, raw: Mapping[str, Any]) -> Scene | Exception:
        """The scene `raw` describes: the listing's own object when it read the same answer
        (compared in full: a job may carry an older listing's answer), else parsed anew."""
        with self._listed_lock:
            kept = self._listed.get(scene_id)
        if kept is not None and kept[0] == raw:
            return kept[1]
        return _parsed(raw)

    def _keep_listed(self, raw: Mapping[str, Any], scene: Scene) -> None:
        with self._listed_lock:
            self._listed[scene.id] = (raw, scene)
            self._listed.move_to_end(scene.id)
            while len(self._listed) > LISTED_KEPT:
                self._listed.popitem(last=False)

    def _by_ids(self, document: str, ids: list[int]) -> list[Mapping[str, Any]]:
        data = self.gql(document, {"ids": [str(i) for i in ids], "filter": {"page": 1, "per_page": len(ids)}})
        return list(data["findScenes"]["scenes"])

    def iter_scenes(self, scene_filter: dict[str, Any] | None = None, after_id: int = 0,
                    page_size: int = PAGE_SIZE) -> Iterator[Scene]:
        """Every matching scene in id order, one bounded page at a time.

        Pages are keyed by id (`id > last seen`), not by page number, so scenes added
        while we iterate never shift a page, and a cancelled run can resume after an id.
        """
        for scene, _raw in self.iter_listing(scene_filter, after_id, page_size):
            yield scene

    def iter_listing(self, scene_filter: dict[str, Any] | None = None, after_id: int = 0,
                     page_size: int = PAGE_SIZE, ahead: bool = False,
                     ) -> Iterator[tuple[Scene, Mapping[str, Any]]]:
        """`iter_scenes` with each scene's answer as Stash gave it, which a job can carry to
        the drain (`find_scenes`' `listed`) instead of the drain reading it again.

        `ahead`: ask for the next page (in a thread) while the caller handles this one, so
        Stash answering and the caller's own work overlap in a pass over the whole library.
        One request in flight at a time still; a caller that stops early has had one page
        read for nothing, so a pass that reads everything asks for it, a search does not.
        """
        def fetch(last: int) -> list[Mapping[str, Any]]:
            criteria = dict(scene_filter or {})
            criteria["id"] = {"value": last, "modifier": "GREATER_THAN"}
            return self.gql(queries.FIND_SCENES, {
                "filter": {"page": 1, "per_page": page_size, "sort": "id", "direction": "ASC"},
                "scene_filter": criteria,
            })["findScenes"]["scenes"]

        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, thread_name_prefix="stash-listing") if ahead else None
        try:
            page = fetch(after_id)
            while True:
                more = len(page) >= page_size
                following = pool.submit(fetch, int(page[-1]["id"])) if pool is not None and more else None
                for raw in page:
                    scene = scene_from_gql(raw)
                    self._keep_listed(raw, scene)
                    yield scene, raw
                if not more:
                    return
                page = following.result() if following is not None else fetch(int(page[-1]["id"]))
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def scene_with_file(self, path: str) -> int | None:
        """The scene that has the file at `path`, if any (compared in NFC, asked in both forms:
        Stash's `path` filter compares the stored text with LIKE, where `_` is a wildcard and
        NFD is not NFC, so its answers are only candidates)."""
        want = nfc(path)
        for form in name_forms(path):
            for scene in self.iter_scenes({"path": {"value": form, "modifier": "EQUALS"}}, page_size=20):
                if any(nfc(f.path) == want for f in scene.files):
                    return scene.id
        return None

    def count_scenes(self, scene_filter: dict[str, Any] | None = None) -> int:
        data = self.gql(queries.COUNT_SCENES, {"filter": {"per_page": 0}, "scene_filter": scene_filter or {}})
        return int(data["findScenes"]["count"])

    def fetch_image(self, url: str) -> bytes | None:
        """Download an image Stash serves, with our credentials (Plex could not fetch it).

        None means "there is no image": Stash answers 404 for a scene without a screenshot
        or an entity deleted since we read it, and an empty body is no image either. That
        is a fact about the scene, not an outage, so the caller skips the upload instead of
        stopping the drain; a refused connection or a 5xx stays `StashUnavailable`.
        """
        api = self._interface()

        def get() -> bytes | None:
            response = api.s.get(url, timeout=30)
            if response.status_code == 401:
                raise Exception("401 Unauthorized")
            if response.status_code in (404, 410):
                return None
            response.raise_for_status()
            return response.content or None

        return self._call(get)


def _parsed(raw: Mapping[str, Any]) -> Scene | Exception:
    """One scene of a batch: a scene we cannot read is that scene's failure, not the batch's."""
    try:
        return scene_from_gql(raw)
    except Exception as exc:  # judged per job by the worker's policy, a bug included
        return exc


def _real_image(path: str | None) -> str | None:
    """Stash marks its placeholder images with `default=true`; they are not worth uploading."""
    return None if not path or "default=true" in path else path


def studio_from_gql(raw: Mapping[str, Any]) -> Studio:
    """A studio and its parent chain (nearest first); a loop in the chain ends it."""
    chain: list[Mapping[str, Any]] = []
    parent = raw.get("parent_studio")
    while parent and parent.get("name") and all(str(p.get("id")) != str(parent.get("id")) for p in chain):
        chain.append(parent)
        parent = parent.get("parent_studio")
    return Studio(
        id=str(raw["id"]),
        name=raw["name"],
        parent_name=chain[0]["name"] if chain else None,
        image_url=_real_image(raw.get("image_path")),
        parents=tuple(Studio(id=str(p.get("id") or ""), name=p["name"], image_url=_real_image(p.get("image_path")))
                      for p in chain),
    )


def group_from_gql(raw: Mapping[str, Any], scene_index: Any = None) -> GroupLink:
    """A group as a scene shows it, with the scene's place in it."""
    index = scene_index if isinstance(scene_index, int) and not isinstance(scene_index, bool) else None
    return GroupLink(id=str(raw["id"]), name=raw.get("name") or "", scene_index=index,
                     synopsis=raw.get("synopsis") or None, image_url=_real_image(raw.get("front_image_path")))


def scene_from_gql(raw: Mapping[str, Any]) -> Scene:
    """Build a Scene record from a findScene(s) answer using `queries.SCENE_FIELDS`."""
    studio = raw.get("studio")
    return Scene(
        id=int(raw["id"]),
        title=raw.get("title") or None,
        code=raw.get("code") or None,
        details=raw.get("details") or None,
        director=raw.get("director") or None,
        date=raw.get("date") or None,
        rating100=raw.get("rating100"),
        urls=tuple(raw.get("urls") or ()),
        files=tuple(
            SceneFile(path=f["path"], size=int(f.get("size") or 0), duration=float(f.get("duration") or 0.0))
            for f in raw.get("files") or ()
        ),
        studio=studio_from_gql(studio) if studio else None,
        performers=tuple(
            Performer(id=str(p["id"]), name=p["name"], image_url=_real_image(p.get("image_path")))
            for p in raw.get("performers") or ()
        ),
        tags=tuple(t["name"] for t in raw.get("tags") or ()),
        tag_ids=tuple(str(t["id"]) for t in raw.get("tags") or () if t.get("id") is not None),
        groups=tuple(g["group"]["name"] for g in raw.get("groups") or () if g.get("group")),
        group_links=tuple(group_from_gql(g["group"], g.get("scene_index"))
                          for g in raw.get("groups") or () if g.get("group") and g["group"].get("id")),
        screenshot_url=(raw.get("paths") or {}).get("screenshot") or None,
        organized=bool(raw.get("organized")),
        created_at=raw.get("created_at") or "",
        updated_at=raw.get("updated_at") or "",
    )
