"""The emulated Stash server: GraphQL over HTTP on loopback, with Stash's auth, images and faults.

Tests talk to it through the real stashapi (and the plugin's `stash.client`), so it answers the
way Stash does (§2.2 of the protocol notes):

* `POST /graphql` runs the document with graphql-core against our SDL subset
  (emulators/stash_schema.graphql, checked against the real schema), so introspection, which
  stashapi needs at construction, comes for free;
* parse, validation and variable-coercion failures are HTTP 422 with `data: null` (gqlgen's
  GRAPHQL_PARSE_FAILED / GRAPHQL_VALIDATION_FAILED); resolver failures are HTTP 200 with
  `errors` next to whatever data resolved;
* with a username and password configured, every request needs the `ApiKey` header (or the
  `apikey` query parameter) or a live `session` cookie; a wrong API key is refused even
  when the server is open. Refusals are 401, `WWW-Authenticate: FormBased`, empty body;
* image URLs are built from the request's Host header and served behind the same auth.

The data lives in a `StashLibrary` (emulators/stash_library.py), which does the filtering,
sorting and paging the way Stash's SQL does; this module only maps it onto the schema.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from graphql import (
    DocumentNode,
    ExecutionContext,
    FieldNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    OperationType,
    Undefined,
    build_schema,
    default_field_resolver,
    execute,
    parse,
    validate,
)
from graphql.execution.execute import get_field_def

from emulators import stash_edits, stash_plays
from emulators.listen import ResettableServer, listen
from emulators.stash_library import File, StashLibrary, png_bytes
from emulators.tls import CertFiles, TlsServer, server_context

SCHEMA_PATH = Path(__file__).with_name("stash_schema.graphql")
STASH_VERSION = {"version": "v0.30.1", "hash": "e1b4ea7d", "build_time": "2025-06-01 12:00:00"}
_IMAGE_ROUTE = re.compile(r"^/(scene)/(\d+)/screenshot$|^/(performer|studio|tag)/(\d+)/image$")
_GROUP_IMAGE_ROUTE = re.compile(r"^/group/(\d+)/(frontimage|backimage)$")
# Since v0.27 a group mutation runs the group hook and then, for older plugins, the movie one.
_GROUP_HOOKS = {"create": ("Group.Create.Post", "Movie.Create.Post"),
                "update": ("Group.Update.Post", "Movie.Update.Post"),
                "destroy": ("Group.Destroy.Post", "Movie.Destroy.Post")}
#: Distinct documents kept parsed and validated (gqlgen's query cache holds 1,000).
QUERY_CACHE = 1000
_NAMED_OPERATION = re.compile(r"\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)")


def load_schema() -> GraphQLSchema:
    """Build the emulator's schema from its SDL file."""
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class HookCall:
    """One post-hook Stash ran for a mutation: what the plugin's `hookContext` would hold."""

    trigger: str
    id: int
    input: Any
    input_fields: list[str] | None

    def context(self) -> dict[str, Any]:
        """`common.HookContext` as JSON: `id` omitted when 0, `inputFields` when empty."""
        context: dict[str, Any] = {"type": self.trigger, "input": self.input}
        if self.id:
            context["id"] = self.id
        if self.input_fields:
            context["inputFields"] = list(self.input_fields)
        return context


@dataclass
class RequestRecord:
    """One request served: GraphQL operations carry their name and variables, images only a path."""

    path: str
    status: int
    operation_name: str | None = None
    variables: dict[str, Any] | None = None


# --- resolvers -----------------------------------------------------------------------------


def _atoi(value: Any) -> int:
    """IDs reach Stash's resolvers as strings and go through strconv.Atoi."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise GraphQLError(f'strconv.Atoi: parsing "{value}": invalid syntax') from None


def _epoch_text(epoch: float) -> str:
    """Go's zero-padded RFC 3339 in UTC, for times the library does not keep in its own zone."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Resolvers:
    """Field resolvers that read the emulator's model; wired onto a fresh schema per server."""

    def __init__(self, server: StashEmulator) -> None:
        self.server = server

    @property
    def lib(self) -> StashLibrary:
        return self.server.library

    def wire(self, schema: GraphQLSchema) -> None:
        lib_stamp = lambda attr: lambda obj, info: self.lib.stamp(getattr(obj, attr))  # noqa: E731
        constant = lambda value: lambda obj, info: value  # noqa: E731
        timestamps = {"created_at": lib_stamp("created_at"), "updated_at": lib_stamp("updated_at")}
        tables: dict[str, dict[str, Callable[..., Any]]] = {
            "Query": {
                "findScene": self.find_scene,
                "findScenes": self.find_scenes,
                "findPerformer": lambda _r, _i, id: self.lib.performers.get(_atoi(id)),
                "findStudio": lambda _r, _i, id: self.lib.studios.get(_atoi(id)),
                "findTag": lambda _r, _i, id: self.lib.tags.get(_atoi(id)),
                "findGroup": lambda _r, _i, id: self.lib.groups.get(_atoi(id)),
                "findGroups": self.named_finder("group", "group_filter"),
                "findPerformers": self.named_finder("performer", "performer_filter"),
                "findStudios": self.named_finder("studio", "studio_filter"),
                "findTags": self.named_finder("tag", "tag_filter"),
                "configuration": lambda _r, _i: self.configuration(),
                "jobQueue": lambda _r, _i: [],
                "findJob": lambda _r, _i, input: self.server.jobs.get(str(input["id"])),
                "version": lambda _r, _i: dict(STASH_VERSION),
            },
            "Mutation": {
                "configurePlugin": self.configure_plugin,
                "metadataScan": self.metadata_scan,
                "sceneAddPlay": self.scene_add_play,
                "sceneSaveActivity": self.scene_save_activity,
                "sceneUpdate": self.scene_update,
                "groupCreate": self.group_create,
                "groupUpdate": self.group_update,
                "groupDestroy": self.group_destroy,
            },
            "ConfigResult": {"plugins": self.plugins},
            "Scene": {
                **timestamps,
                "interactive": constant(False),
                "stash_ids": constant([]),
                "play_history": lambda s, _i: [self.lib.stamp(t) for t in s.play_history],
                "last_played_at": lambda s, _i: (None if stash_plays.last_played_at(s) is None
                                                 else self.lib.stamp(stash_plays.last_played_at(s))),
                "paths": self.scene_paths,
                "studio": lambda s, _i: self.lib.studios.get(s.studio_id) if s.studio_id is not None else None,
                "performers": lambda s, _i: [self.lib.performers[i] for i in s.performer_ids if i in self.lib.performers],
                "tags": lambda s, _i: [self.lib.tags[i] for i in s.tag_ids if i in self.lib.tags],
                "groups": lambda s, _i: [{"group": self.lib.groups[g], "scene_index": index}
                                         for g, index in s.groups if g in self.lib.groups],
            },
            "VideoFile": {
                "mod_time": lambda f, _i: self.lib.stamp(f.mod_time),
                **timestamps,
                "parent_folder": self.folder_of,
                "fingerprints": lambda f, _i: [{"type": "oshash", "value": f.oshash}],
            },
            "Folder": {name: (lambda d, _i, n=name: d[n]) for name in
                       ("id", "path", "parent_folder", "mod_time", "created_at", "updated_at")},
            "Studio": {
                **timestamps,
                "parent_studio": lambda s, _i: self.lib.studios.get(s.parent_id) if s.parent_id else None,
                "child_studios": lambda s, _i: self.lib.child_studios(s.id),
                "tags": constant([]), "ignore_auto_tag": constant(False), "stash_ids": constant([]),
                "rating100": constant(None),
                "image_path": self.image_path("studio"),
                "scene_count": lambda s, _i, depth=None: self.lib.scene_counts("studio").get(s.id, 0),
            },
            "Performer": {
                **timestamps,
                "tags": constant([]), "ignore_auto_tag": constant(False), "stash_ids": constant([]),
                "rating100": constant(None),
                "image_path": self.image_path("performer"),
                "scene_count": lambda p, _i: self.lib.scene_counts("performer").get(p.id, 0),
            },
            "Tag": {
                **timestamps,
                "sort_name": constant(None), "ignore_auto_tag": constant(False), "stash_ids": constant([]),
                "image_path": self.image_path("tag"),
                "scene_count": lambda t, _i, depth=None: self.lib.scene_counts("tag").get(t.id, 0),
                "parents": lambda t, _i: [self.lib.tags[i] for i in t.parent_ids if i in self.lib.tags],
                "children": lambda t, _i: self.lib.child_tags(t.id),
                "parent_count": lambda t, _i: len(t.parent_ids),
                "child_count": lambda t, _i: len(self.lib.child_tags(t.id)),
            },
            "Group": {
                **timestamps,
                "tags": lambda g, _i: [self.lib.tags[i] for i in g.tag_ids if i in self.lib.tags],
                "studio": lambda g, _i: self.lib.studios.get(g.studio_id) if g.studio_id is not None else None,
                "containing_groups": lambda g, _i: self.group_links(self.lib.containing_groups(g.id)),
                "sub_groups": lambda g, _i: self.group_links(g.sub_groups),
                "front_image_path": self.group_image_path("frontimage"),
                "back_image_path": self.group_image_path("backimage"),
                "scene_count": lambda g, _i, depth=None: self.lib.group_scene_count(g.id, depth),
                "sub_group_count": lambda g, _i, depth=None: self.lib.sub_group_count(g.id, depth),
            },
        }
        for type_name, resolvers in tables.items():
            graphql_type = schema.type_map[type_name]
            assert isinstance(graphql_type, GraphQLObjectType)
            for field_name, resolver in resolvers.items():
                graphql_type.fields[field_name].resolve = resolver

    # --- root fields ---

    def find_scene(self, _root: Any, _info: Any, id: Any = None, checksum: str | None = None) -> Any:
        if id is None:
            return None  # lookups by checksum are not modelled: no scene matches
        return self.lib.scenes.get(_atoi(id))

    def find_scenes(self, _root: Any, _info: Any, scene_filter: dict | None = None,
                    scene_ids: list[int] | None = None, ids: list[str] | None = None,
                    filter: dict | None = None) -> Any:
        wanted = ids if ids else scene_ids  # Stash prefers ids, then the deprecated scene_ids
        return self.lib.find_scenes(scene_filter, filter, [_atoi(i) for i in wanted] if wanted else None)

    def named_finder(self, kind: str, filter_arg: str) -> Callable[..., Any]:
        def resolve(_root: Any, _info: Any, filter: dict | None = None, ids: list[str] | None = None,
                    **criteria: Any) -> Any:
            return self.lib.find_named(kind, criteria.get(filter_arg), filter,
                                       [_atoi(i) for i in ids] if ids else None)
        return resolve

    def configuration(self) -> dict[str, Any]:
        server = self.server
        false_flags = dict.fromkeys(
            ("rescan", "scanGenerateCovers", "scanGeneratePreviews", "scanGenerateImagePreviews",
             "scanGenerateSprites", "scanGeneratePhashes", "scanGenerateThumbnails",
             "scanGenerateClipPreviews"), False)
        return {
            "general": {
                "stashes": [{"path": "/data/stash", "excludeVideo": False, "excludeImage": False}],
                "databasePath": "/root/.stash/stash-go.sqlite", "generatedPath": "/generated",
                "configFilePath": "/root/.stash/config.yml", "pluginsPath": "/root/.stash/plugins",
                "apiKey": server.api_key, "username": server.username or "",
                "maxSessionAge": server.session_max_age, "pythonPath": "",
                "videoExtensions": ["m4v", "mp4", "mov", "wmv", "avi", "mpg", "mpeg", "mkv", "webm"],
            },
            "defaults": {"scan": false_flags, "deleteFile": False, "deleteGenerated": False},
            "ui": {},
        }

    def plugins(self, _config: Any, _info: Any, include: list[str] | None = None) -> dict[str, Any]:
        """Stash leaves out plugins with no stored settings, and unknown ids, without an error."""
        stored = self.server.plugin_settings
        keys = stored.keys() if include is None else [k for k in include if k in stored]
        return {k: dict(stored[k]) for k in keys if stored[k]}

    def configure_plugin(self, _root: Any, _info: Any, plugin_id: str, input: dict[str, Any]) -> dict[str, Any]:
        self.server.set_plugin_settings(plugin_id, input)
        return dict(input)

    def metadata_scan(self, _root: Any, _info: Any, input: dict[str, Any]) -> str:
        return self.server.record_scan(input)

    def _scene(self, id: Any) -> Any:
        scene = self.lib.scenes.get(_atoi(id))
        if scene is None:
            raise GraphQLError(f"scene with id {id} not found")
        return scene

    def scene_add_play(self, _root: Any, _info: Any, id: Any, times: list[str] | None = None) -> dict[str, Any]:
        now = self.server.clock()
        try:
            when = [stash_plays.parse_timestamp(t, now) for t in times] if times else [float(int(now))]
        except stash_plays.BadTimestamp as exc:
            raise GraphQLError(str(exc)) from None
        with self.server.write_lock:
            scene = self._scene(id)
            stash_plays.add_plays(scene, when)
            history = list(scene.play_history)
        return {"count": len(history), "history": [self.lib.stamp(t) for t in history]}

    def scene_save_activity(self, _root: Any, _info: Any, id: Any, resume_time: float | None = None,
                            playDuration: float | None = None) -> bool:
        with self.server.write_lock:
            stash_plays.save_activity(self._scene(id), resume_time, playDuration)
        return True

    # --- scene and group edits (each fires its hooks after the write, before answering) ---

    def _edit(self, info: Any, input: dict[str, Any], edit: Callable[[], int],
              triggers: tuple[str, ...], fields: bool) -> int:
        """Runs one edit under the write lock, then the post-hooks with Stash's context."""
        try:
            with self.server.write_lock:
                entity_id = edit()
        except stash_edits.EditRefused as exc:
            raise GraphQLError(str(exc)) from None
        full = {name: None for name in info.parent_type.fields[info.field_name].args["input"].type.of_type.fields}
        full.update(input)
        for trigger in triggers:
            self.server.fire_hook(HookCall(trigger, entity_id, full, list(input) if fields else None))
        return entity_id

    def scene_update(self, _root: Any, info: Any, input: dict[str, Any]) -> Any:
        now = self.server.clock()
        scene_id = self._edit(info, input, lambda: stash_edits.update_scene(self.lib, input, now),
                              ("Scene.Update.Post",), fields=True)
        return self.lib.scenes[scene_id]

    def group_create(self, _root: Any, info: Any, input: dict[str, Any]) -> Any:
        now = self.server.clock()
        group_id = self._edit(info, input, lambda: stash_edits.create_group(self.lib, input, now),
                              _GROUP_HOOKS["create"], fields=False)
        return self.lib.groups.get(group_id)

    def group_update(self, _root: Any, info: Any, input: dict[str, Any]) -> Any:
        now = self.server.clock()
        group_id = self._edit(info, input, lambda: stash_edits.update_group(self.lib, input, now),
                              _GROUP_HOOKS["update"], fields=True)
        return self.lib.groups.get(group_id)

    def group_destroy(self, _root: Any, info: Any, input: dict[str, Any]) -> bool:
        self._edit(info, input, lambda: stash_edits.destroy_group(self.lib, input), _GROUP_HOOKS["destroy"],
                   fields=False)
        return True

    # --- object fields ---

    def group_links(self, links: list[tuple[int, str | None]]) -> list[dict[str, Any]]:
        return [{"group": self.lib.groups[g], "description": d} for g, d in links if g in self.lib.groups]

    def group_image_path(self, kind: str) -> Callable[[Any, Any], str | None]:
        """`/group/<id>/frontimage?t=<updated>` (`&default=true` without an image); the back
        image's path is null when there is none (Stash's groupResolver)."""
        def resolve(group: Any, info: Any) -> str | None:
            image = group.front_image if kind == "frontimage" else group.back_image
            if image is None and kind == "backimage":
                return None
            url = f"{info.context['base']}/group/{group.id}/{kind}?t={int(group.updated_at)}"
            return url + "&default=true" if image is None else url
        return resolve

    def scene_paths(self, scene: Any, info: Any) -> dict[str, str]:
        base = f"{info.context['base']}/scene/{scene.id}"
        epoch = int(scene.updated_at)
        return {
            "screenshot": f"{base}/screenshot?t={epoch}",
            "preview": f"{base}/preview", "stream": f"{base}/stream", "webp": f"{base}/webp",
            "vtt": f"{base}/vtt/thumbs", "sprite": f"{base}/vtt/sprite",
            "funscript": f"{base}/funscript", "interactive_heatmap": f"{base}/interactive_heatmap",
            "caption": f"{base}/caption",
        }

    def folder_of(self, file: File, _info: Any) -> dict[str, Any]:
        stamp = self.lib.stamp(file.mod_time)
        return {"id": self.lib.folder_id(file.folder), "path": file.folder, "parent_folder": None,
                "mod_time": stamp, "created_at": stamp, "updated_at": stamp}

    def image_path(self, kind: str) -> Callable[[Any, Any], str]:
        """`/<kind>/<id>/image?t=<updated>`, with `&default=true` when Stash would serve its placeholder."""
        def resolve(entity: Any, info: Any) -> str:
            url = f"{info.context['base']}/{kind}/{entity.id}/image?t={int(entity.updated_at)}"
            return url + "&default=true" if entity.image is None else url
        return resolve


# --- faults ----------------------------------------------------------------------------------


class StashFaults:
    """What can go wrong with a Stash server, switchable from a test."""

    def __init__(self, server: StashEmulator) -> None:
        self._server = server
        self.latency = 0.0
        self._fail: list[str | None] = []  # None: that operation is answered
        self._http_500 = 0
        self._lock = threading.Lock()
        #: Called with (request, "before"|"after") around each GraphQL run; True from "before"
        #: drops the request unanswered and unrun, as if the client died before sending it.
        #: Kill-point tests stop the plugin from here at an exact step.
        self.intercept: Callable[[RequestRecord, str], bool] | None = None

    @property
    def down(self) -> bool:
        return self._server._httpd is None

    @down.setter
    def down(self, value: bool) -> None:
        """Down closes the listening socket (connection refused); up reopens it on the same port."""
        if value:
            self._server._stop()
        elif self._server._httpd is None:
            self._server._start(self._server.port)

    def fail_next(self, n: int = 1, message: str = "database is locked", after: int = 0) -> None:
        """The next `n` GraphQL operations fail in their resolvers (HTTP 200, errors, data null),
        once `after` more have been answered."""
        with self._lock:
            self._fail.extend([None] * after + [message] * n)

    def http_500_next(self, n: int = 1) -> None:
        with self._lock:
            self._http_500 += n

    def take_fail(self) -> str | None:
        with self._lock:
            return self._fail.pop(0) if self._fail else None

    def take_500(self) -> bool:
        with self._lock:
            if self._http_500 > 0:
                self._http_500 -= 1
                return True
            return False


# --- the server ------------------------------------------------------------------------------


class StashEmulator:
    """A Stash server on 127.0.0.1 (random free port), serving `library` until closed."""

    def __init__(self, library: StashLibrary | None = None, *, username: str | None = None,
                 password: str | None = None, api_key: str = "", session_max_age: int = 3600,
                 clock: Callable[[], float] = time.time, tls: CertFiles | None = None, latency: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep, port: int = 0) -> None:
        """`latency`: seconds every request waits before it is answered, the network's round
        trip; part of the set-up, unlike `faults.latency`. Each request has its own thread
        and the wait holds no lock, so requests in flight overlap as they would on a real
        network. `sleep` is how it waits (injected by tests).
        `port`: 0 takes a free one; a fixed port outside the range the OS hands out to
        outgoing connections keeps a restart (`faults.down`) from finding its port taken by
        a client's connection meanwhile, as a real server's configured port never is."""
        self.tls = tls  # HTTPS with this certificate, as Stash does with stash.crt/stash.key
        self.latency = latency
        self._sleep = sleep
        self.library = library if library is not None else StashLibrary()
        self.username = username
        self.password = password
        self.api_key = api_key
        self.session_max_age = session_max_age
        self.clock = clock
        self.plugin_settings: dict[str, dict[str, Any]] = {}
        #: Every post-hook a mutation fired, in order; `hook_sink` (a plugin host's runner,
        #: see Stage.run_hooks_on_edits) is called with each, synchronously, as Stash waits
        #: for its hooks before answering the mutation.
        self.hooks: list[HookCall] = []
        self.hook_sink: Callable[[HookCall], Any] | None = None
        self.scans: list[dict[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.requests: list[RequestRecord] = []
        self.faults = StashFaults(self)
        self._sessions: dict[str, float] = {}  # token -> expiry (epoch per `clock`)
        self._lock = threading.Lock()
        #: Stash's database transaction: one mutation at a time, and every request runs whole
        #: inside it, so a test editing the library meanwhile (under this lock) is seen by a
        #: request entirely or not at all, as Stash's readers see only committed writes.
        self.write_lock = threading.RLock()
        self.schema = load_schema()
        self._documents: dict[str, tuple[DocumentNode, list[GraphQLError]]] = {}
        _Resolvers(self).wire(self.schema)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self._start(port)

    # --- lifecycle ---

    def _start(self, port: int) -> None:
        handler = type("Handler", (_Handler,), {"emulator": self})
        httpd = listen(lambda: _Server(("127.0.0.1", port), handler), port)
        if self.tls is not None:
            httpd.tls_context = server_context(self.tls)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"stash-emulator-{self.port}", daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.reset_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> StashEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    # --- auth ---

    @property
    def auth_required(self) -> bool:
        return bool(self.username and self.password)

    def session_cookie(self) -> dict[str, Any] | None:
        """A fresh session, as the Go http.Cookie Stash puts into server_connection.SessionCookie."""
        if not self.auth_required:
            return None
        token = secrets.token_urlsafe(32)
        expires = self.clock() + self.session_max_age
        with self._lock:
            self._sessions[token] = expires
        return {
            "Name": "session", "Value": token, "Quoted": False, "Path": "/", "Domain": "",
            "Expires": _epoch_text(expires), "RawExpires": "", "MaxAge": self.session_max_age,
            "Secure": False, "HttpOnly": True, "SameSite": 0, "Partitioned": False, "Raw": "",
            "Unparsed": None,
        }

    def connection(self, cookie: bool = True) -> dict[str, Any]:
        """The server_connection a plugin receives (Dir and PluginDir left to the host)."""
        return {"Scheme": self.scheme, "Host": "127.0.0.1", "Port": self.port,
                "SessionCookie": self.session_cookie() if cookie else None}

    def authorized(self, api_key: str, session: str | None) -> bool:
        """pkg/session Authenticate: a presented API key must match; otherwise a live session."""
        if api_key:
            return api_key == self.api_key
        if not self.auth_required:
            return True
        if session is None:
            return False
        with self._lock:
            expiry = self._sessions.get(session)
        return expiry is not None and self.clock() < expiry

    # --- state ---

    def set_plugin_settings(self, plugin_id: str, values: dict[str, Any]) -> None:
        with self._lock:
            self.plugin_settings[plugin_id] = dict(values)

    def record_scan(self, input: dict[str, Any]) -> str:
        with self._lock:
            job_id = str(len(self.jobs) + 1)
            self.scans.append(dict(input))
            now = _epoch_text(self.clock())
            self.jobs[job_id] = {"id": job_id, "status": "FINISHED", "subTasks": [], "description": "Scanning...",
                                 "progress": 1.0, "startTime": now, "endTime": now, "addTime": now, "error": None}
        return job_id

    def fire_hook(self, call: HookCall) -> None:
        with self._lock:
            self.hooks.append(call)
        if self.hook_sink is not None:
            self.hook_sink(call)

    def log(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def count(self, operation: str | None = None) -> int:
        """GraphQL operations served, all or those with this operationName."""
        with self._lock:
            return sum(1 for r in self.requests if r.path == "/graphql"
                       and (operation is None or r.operation_name == operation))

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- GraphQL ---

    def _checked(self, query: str) -> tuple[DocumentNode, list[GraphQLError]]:
        """The document and what validation found in it, worked out once per distinct text
        (as Stash's GraphQL server keeps its last documents): a whole-library listing sends
        one document hundreds of times. A document that does not parse raises each time."""
        with self._lock:
            known = self._documents.get(query)
        if known is None:
            document = parse(query)
            known = (document, validate(self.schema, document))
            with self._lock:
                if len(self._documents) >= QUERY_CACHE:
                    del self._documents[next(iter(self._documents))]
                self._documents[query] = known
        return known

    def run_graphql(self, body: dict[str, Any], base: str) -> tuple[int, dict[str, Any]]:
        """Execute one request body; returns the HTTP status and the JSON answer."""
        query = body.get("query")
        variables = body.get("variables") or {}
        operation = body.get("operationName") or None
        if not isinstance(query, str) or not query.strip():
            return 422, _errors([GraphQLError("no operation provided")], "GRAPHQL_PARSE_FAILED")
        try:
            document, problems = self._checked(query)
        except GraphQLError as exc:
            return 422, _errors([exc], "GRAPHQL_PARSE_FAILED")
        if problems:
            return 422, _errors(problems, "GRAPHQL_VALIDATION_FAILED")
        context = {"base": base}
        prepared = ExecutionContext.build(self.schema, document, None, context, variables, operation)
        if isinstance(prepared, list):  # variables that do not coerce, or no such operation
            return 422, _errors(prepared, "GRAPHQL_VALIDATION_FAILED")
        failure = self.faults.take_fail()
        middleware = [_failing_roots(failure)] if failure else None
        with self.write_lock:
            result = execute(self.schema, document, context_value=context, variable_values=variables,
                             operation_name=operation, middleware=middleware, execution_context_class=_Execution)
        answer: dict[str, Any] = {}
        if result.errors:
            answer["errors"] = [e.formatted for e in result.errors]
        answer["data"] = result.data
        return 200, answer


class _Execution(ExecutionContext):
    """graphql-core's execution, with each object of a query completed once per request.

    A page of scenes shows the same studios (and their parents), performers, tags and groups
    over and over, and completing them field by field each time was most of this emulator's
    CPU in a whole-library listing, time a benchmark would charge to the plugin's wall clock.
    The answer is the same: the library is locked for the request, and no resolver depends on
    where an object sits. A completion that added an error is not reused (the error names its
    own path), and a mutation completes everything afresh, since it may change an object
    between two of its fields. No resolver here is async, so nothing is checked for it.
    """

    is_awaitable = staticmethod(lambda value: False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reuse = self.operation.operation is OperationType.QUERY
        #: (type, object id, selection node ids) -> (the object, kept alive so its id stays
        #: its own, and its completed value)
        self._completed: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        #: (type, field node id) -> (field name, the scalar's serialize, nullable) of a plain
        #: leaf, or None
        self._leaves: dict[tuple[str, int], tuple[str, Callable[[Any], Any], bool] | None] = {}

    def execute_field(self, parent_type: GraphQLObjectType, source: Any, field_nodes: list[FieldNode],
                      path: Any) -> Any:
        """A plain leaf (a scalar read off its parent by the default resolver, no arguments)
        is answered directly, as graphql-core would: the value itself, serialized. Anything
        else, and any such value that graphql-core would report an error for, takes the
        whole way."""
        key = (parent_type.name, id(field_nodes[0]))
        leaf = self._leaves[key] if key in self._leaves else self._leaves.setdefault(
            key, self._plain_leaf(parent_type, field_nodes[0]))
        if leaf is not None:
            name, serialize, nullable = leaf
            value = source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
            if value is None and nullable:
                return None
            if value is not None and not callable(value):
                try:
                    out = serialize(value)
                except Exception:
                    out = None
                if out is not None and out is not Undefined:
                    return out
        return super().execute_field(parent_type, source, field_nodes, path)

    def _plain_leaf(self, parent_type: GraphQLObjectType,
                    node: FieldNode) -> tuple[str, Callable[[Any], Any], bool] | None:
        field = get_field_def(self.schema, parent_type, node)
        if (field is None or field.resolve is not None or field.args or self.middleware_manager is not None
                or self.field_resolver is not default_field_resolver):
            return None
        kind = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        if not isinstance(kind, (GraphQLScalarType, GraphQLEnumType)):
            return None
        return node.name.value, kind.serialize, not isinstance(field.type, GraphQLNonNull)

    def complete_object_value(self, return_type: GraphQLObjectType, field_nodes: list[FieldNode],
                              info: GraphQLResolveInfo, path: Any, result: Any) -> Any:
        if not self._reuse:
            return super().complete_object_value(return_type, field_nodes, info, path, result)
        key = (return_type.name, id(result), *map(id, field_nodes))
        done = self._completed.get(key)
        if done is not None:
            return done[1]
        errors = self._error_count()
        value = super().complete_object_value(return_type, field_nodes, info, path, result)
        if self._error_count() == errors:
            self._completed[key] = (result, value)
        return value

    def _error_count(self) -> int:
        collected = getattr(self, "collected_errors", None)  # graphql-core 3.2.6+; `errors` before
        return len(collected.errors if collected is not None else self.errors)


def _errors(errors: list[GraphQLError], code: str | None = None) -> dict[str, Any]:
    """gqlgen tags request-level failures with `extensions.code` (errcode.ValidationFailed ...);
    stashapi logs that code in front of each message."""
    formatted = [e.formatted for e in errors]
    if code:
        formatted = [dict(e, extensions={**(e.get("extensions") or {}), "code": code}) for e in formatted]
    return {"errors": formatted, "data": None}


def _failing_roots(message: str) -> Callable[..., Any]:
    """Middleware that fails every root field (not introspection) the way a locked database does."""
    def middleware(next_: Callable[..., Any], root: Any, info: Any, **args: Any) -> Any:
        if info.parent_type.name in ("Query", "Mutation") and not info.field_name.startswith("__"):
            raise GraphQLError(message)
        return next_(root, info, **args)
    return middleware


class _Server(ResettableServer, TlsServer, ThreadingHTTPServer):
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as Stash's Go server: a client's pool reuses its connections
    (going down resets them, `ResettableServer`)."""

    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle on, a keep-alive client's delayed
    # ACK would hold every answer ~40 ms, the emulator's cost, not the client's.
    disable_nagle_algorithm = True

    emulator: StashEmulator
    server_version = "stash-emulator"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _credentials(self) -> tuple[str, str | None]:
        query = parse_qs(urlsplit(self.path).query)
        key = self.headers.get("ApiKey") or (query.get("apikey") or [""])[0]
        session = None
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "session":
                session = value
        return key, session

    def _send(self, status: int, body: bytes = b"", content_type: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _gate(self, path: str, record: RequestRecord) -> bool:
        """Latency, injected 500s and auth, common to every route; True when the request may go on."""
        emulator = self.emulator
        delay = emulator.latency + emulator.faults.latency
        if delay:
            emulator._sleep(delay)
        if emulator.faults.take_500():
            record.status = 500
            emulator.log(record)
            self._send(500, b"Internal Server Error", "text/plain; charset=utf-8")
            return False
        if not emulator.authorized(*self._credentials()):
            record.status = 401
            emulator.log(record)
            self._send(401, headers={"WWW-Authenticate": "FormBased"})
            return False
        return True

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        record = RequestRecord(path=path, status=0)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if isinstance(body, dict):
            # stashapi never sends operationName; Stash then runs the document's one operation,
            # so the log names it after that, and count("FindScenes") means what it says.
            named = _NAMED_OPERATION.match(body.get("query") or "") if isinstance(body.get("query"), str) else None
            record.operation_name = body.get("operationName") or (named.group(1) if named else None)
            record.variables = body.get("variables")
        if not self._gate(path, record):
            return
        if path != "/graphql":
            record.status = 404
            self.emulator.log(record)
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        intercept = self.emulator.faults.intercept
        if intercept is not None and intercept(record, "before"):
            self.close_connection = True
            return
        if not isinstance(body, dict):
            status, answer = 400, _errors([GraphQLError("json request body could not be decoded")])
        else:
            status, answer = self.emulator.run_graphql(body, f"{self.emulator.scheme}://{self.headers.get('Host')}")
        if intercept is not None:
            intercept(record, "after")
        record.status = status
        self.emulator.log(record)
        self._send(status, json.dumps(answer).encode(), "application/json")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        record = RequestRecord(path=path, status=0)
        if not self._gate(path, record):
            return
        image = self._image(path)
        record.status = 200 if image is not None else 404
        self.emulator.log(record)
        if image is None:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
        else:
            self._send(200, image, "image/png")

    def _image(self, path: str) -> bytes | None:
        group_match = _GROUP_IMAGE_ROUTE.match(path)
        if group_match:
            group = self.emulator.library.groups.get(int(group_match.group(1)))
            if group is None:
                return None
            image = group.front_image if group_match.group(2) == "frontimage" else group.back_image
            return image if image is not None else png_bytes(0)  # Stash's placeholder
        match = _IMAGE_ROUTE.match(path)
        if not match:
            return None
        kind = match.group(1) or match.group(3)
        entity_id = int(match.group(2) or match.group(4))
        lib = self.emulator.library
        if kind == "scene":
            scene = lib.scenes.get(entity_id)
            return None if scene is None else (scene.cover or png_bytes(entity_id))
        table: dict[int, Any] = {"performer": lib.performers, "studio": lib.studios, "tag": lib.tags}[kind]
        entity = table.get(entity_id)
        if entity is None:
            return None
        return entity.image if entity.image is not None else png_bytes(0)  # Stash's placeholder
