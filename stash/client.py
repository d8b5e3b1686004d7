"""The Stash façade: stashapi underneath, our records and error classes on top.

Only this module talks to Stash. It turns transport and GraphQL failures into
`StashUnavailable`/`StashAuthError` at the edge and GraphQL answers into `stash.records`,
so callers never depend on stashapi's behaviour or the answer's shape.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

from plugin.errors import SceneGone, StashAuthError, StashUnavailable
from plugin.protocol import StashLog
from plugin.settings import PLUGIN_ID, plugin_settings_map
from stash import queries
from stash.records import Performer, Scene, SceneFile, Studio

PAGE_SIZE = 200


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
        self.graphql_errors: list[str] = []

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
            # force_api_key: the session cookie Stash gives us expires after an hour, and a
            # background worker may outlive it. We never mutate scenes, so losing the
            # cookie's hook-loop protection costs nothing.
            self._api = self._call(lambda: StashInterface(conn, force_api_key=True))
        return self._api

    def _call(self, fn: Any) -> Any:
        import requests

        self._stashapi_log.graphql_errors.clear()
        try:
            return fn()
        except requests.exceptions.RequestException as exc:
            raise StashUnavailable(f"Cannot reach Stash at {self.url} ({type(exc).__name__}).") from None
        except Exception as exc:
            text = str(exc)
            if text.startswith("401"):
                raise StashAuthError(
                    f"Stash at {self.url} refused our credentials (401): the session may have expired; "
                    "run the task again from Stash."
                ) from None
            errors = self._stashapi_log.graphql_errors
            detail = f": {errors[0]}" if errors else ""
            if text[:3].isdigit() and text[0] in "45":
                status = text.split(" query failed")[0]
                raise StashUnavailable(f"Stash at {self.url} answered {status}{detail}.") from None
            if text.startswith("200 "):
                # HTTP 200 with `errors`: a resolver failed (a locked database, a closed
                # connection). Stash itself is in trouble for a while; not our bug.
                raise StashUnavailable(f"Stash at {self.url} could not answer the query{detail}.") from None
            raise

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

    def iter_scenes(self, scene_filter: dict[str, Any] | None = None, after_id: int = 0,
                    page_size: int = PAGE_SIZE) -> Iterator[Scene]:
        """Every matching scene in id order, one bounded page at a time.

        Pages are keyed by id (`id > last seen`), not by page number, so scenes added
        while we iterate never shift a page, and a cancelled run can resume after an id.
        """
        last = after_id
        while True:
            criteria = dict(scene_filter or {})
            criteria["id"] = {"value": last, "modifier": "GREATER_THAN"}
            page = self.gql(queries.FIND_SCENES, {
                "filter": {"page": 1, "per_page": page_size, "sort": "id", "direction": "ASC"},
                "scene_filter": criteria,
            })["findScenes"]["scenes"]
            for raw in page:
                scene = scene_from_gql(raw)
                last = scene.id
                yield scene
            if len(page) < page_size:
                return

    def scene_with_file(self, path: str) -> int | None:
        """The scene that has the file at `path`, if any (compared in NFC, asked in both forms:
        Stash's `path` filter compares the stored text with LIKE, where `_` is a wildcard and
        NFD is not NFC, so its answers are only candidates)."""
        want = unicodedata.normalize("NFC", path)
        for form in dict.fromkeys((want, unicodedata.normalize("NFD", path))):
            for scene in self.iter_scenes({"path": {"value": form, "modifier": "EQUALS"}}, page_size=20):
                if any(unicodedata.normalize("NFC", f.path) == want for f in scene.files):
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


def _real_image(path: str | None) -> str | None:
    """Stash marks its placeholder images with `default=true`; they are not worth uploading."""
    return None if not path or "default=true" in path else path


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
        studio=Studio(
            id=str(studio["id"]),
            name=studio["name"],
            parent_name=(studio.get("parent_studio") or {}).get("name"),
            image_url=_real_image(studio.get("image_path")),
        ) if studio else None,
        performers=tuple(
            Performer(id=str(p["id"]), name=p["name"], image_url=_real_image(p.get("image_path")))
            for p in raw.get("performers") or ()
        ),
        tags=tuple(t["name"] for t in raw.get("tags") or ()),
        tag_ids=tuple(str(t["id"]) for t in raw.get("tags") or () if t.get("id") is not None),
        groups=tuple(g["group"]["name"] for g in raw.get("groups") or () if g.get("group")),
        screenshot_url=(raw.get("paths") or {}).get("screenshot") or None,
        organized=bool(raw.get("organized")),
        created_at=raw.get("created_at") or "",
        updated_at=raw.get("updated_at") or "",
    )
