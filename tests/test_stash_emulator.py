"""The emulated Stash answers the real client library the way real Stash does.

Everything goes over real HTTP on loopback: stashapi's `StashInterface` (stashapp-tools
0.2.59) for what a plugin sees, raw `requests` where the wire itself is the fact (status
codes, headers, empty bodies). The facts pinned here are those of the protocol notes
§2 (Stash GraphQL, auth, errors, timestamp filters) and §3 (what stashapi sends and how it
reacts), so a test that passes against the emulator says something about the real server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from emulators.stash_library import StashLibrary, generate_library, png_bytes, stash_timestamp
from emulators.stash_server import STASH_VERSION, StashEmulator

USER, PASSWORD, KEY = "admin", "hunter2-pass", "emulator-api-key-0123456789"
FRAGMENT = "id title updated_at created_at files { path basename } studio { name }"


class Recorder:
    """A stashapi `Logger` that keeps what stashapi would have printed, to assert on it."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        if level.startswith("_"):
            raise AttributeError(level)
        return lambda msg, *args, **kwargs: self.lines.append((level, str(msg)))

    def errors(self) -> list[str]:
        return [text for level, text in self.lines if level == "error"]


def interface(conn: dict[str, Any], **kwargs: Any) -> tuple[Any, Recorder]:
    from stashapi.stashapp import StashInterface

    log = Recorder()
    return StashInterface(dict(conn, Logger=log), **kwargs), log


@pytest.fixture
def library() -> StashLibrary:
    return generate_library(120, seed=11)


@pytest.fixture
def open_stash(library: StashLibrary) -> Iterator[StashEmulator]:
    """No username/password: Stash is open to anyone (but still checks a presented key)."""
    with StashEmulator(library) as server:
        yield server


@pytest.fixture
def locked_stash(library: StashLibrary) -> Iterator[StashEmulator]:
    with StashEmulator(library, username=USER, password=PASSWORD, api_key=KEY) as server:
        yield server


def post(server: StashEmulator, query: str, variables: dict | None = None, **kwargs: Any) -> requests.Response:
    return requests.post(f"{server.url}/graphql", json={"query": query, "variables": variables or {}},
                         timeout=10, **kwargs)


# --- construction ----------------------------------------------------------------------------


def test_construction_sends_version_api_key_and_introspection(open_stash: StashEmulator) -> None:
    api, _log = interface(open_stash.connection())
    assert [r.operation_name for r in open_stash.requests] == ["StashVersion", "getApiKey", None]  # introspection is anonymous
    assert all(r.status == 200 for r in open_stash.requests)
    assert str(api.version).startswith(STASH_VERSION["version"])
    # the introspection answer is what stashapi builds its fragments from
    assert {"Scene", "Studio", "Performer", "Tag", "ConfigResult"} <= set(api.fragments)
    assert "fingerprints" in api.fragments["VideoFile"] and "fingerprint(" not in api.fragments["VideoFile"]


def test_session_cookie_is_sent_as_session_and_accepted(locked_stash: StashEmulator) -> None:
    conn = locked_stash.connection()
    api, _log = interface(conn)
    assert api.s.cookies.get("session") == conn["SessionCookie"]["Value"]
    scene = api.find_scene(1, fragment="id")
    assert scene == {"id": "1"}


def test_no_credentials_on_a_locked_stash_is_401_at_construction(locked_stash: StashEmulator) -> None:
    with pytest.raises(Exception, match=r"^401 Unauthorized query failed"):
        interface(locked_stash.connection(cookie=False))
    assert [r.status for r in locked_stash.requests] == [401]  # stashapi gives up after the version query


def test_api_key_header_is_accepted_without_a_cookie(locked_stash: StashEmulator) -> None:
    api, _log = interface(dict(locked_stash.connection(cookie=False), ApiKey=KEY))
    assert api.s.headers["ApiKey"] == KEY
    assert api.find_scene(2, fragment="id") == {"id": "2"}


@pytest.mark.parametrize("server_name", ["open_stash", "locked_stash"])
def test_a_wrong_api_key_is_401_even_on_an_open_stash(server_name: str, request: pytest.FixtureRequest) -> None:
    server: StashEmulator = request.getfixturevalue(server_name)
    with pytest.raises(Exception, match=r"^401 Unauthorized query failed") as caught:
        interface(dict(server.connection(cookie=False), ApiKey="not-the-key"))
    assert type(caught.value) is Exception  # stashapi raises a bare Exception, text only
    assert server.requests[-1].status == 401


def test_force_api_key_drops_the_cookie_and_outlives_the_session(library: StashLibrary) -> None:
    now = [1_700_000_000.0]
    with StashEmulator(library, username=USER, password=PASSWORD, api_key=KEY, session_max_age=60,
                       clock=lambda: now[0]) as server:
        api, _log = interface(server.connection(), force_api_key=True)
        assert api.s.headers.get("ApiKey") == KEY and not api.s.cookies
        now[0] += 3600  # the session cookie Stash handed over has expired
        assert api.find_scene(3, fragment="id") == {"id": "3"}


def test_an_expired_session_cookie_is_refused(library: StashLibrary) -> None:
    now = [1_700_000_000.0]
    with StashEmulator(library, username=USER, password=PASSWORD, api_key="", session_max_age=60,
                       clock=lambda: now[0]) as server:
        api, _log = interface(server.connection(), force_api_key=True)  # no key to switch to
        assert api.s.cookies.get("session")
        assert api.find_scene(1, fragment="id") == {"id": "1"}
        now[0] += 61
        with pytest.raises(Exception, match=r"^401 Unauthorized"):
            api.find_scene(1, fragment="id")


def test_stash_down_is_a_connection_error(open_stash: StashEmulator) -> None:
    open_stash.faults.down = True
    with pytest.raises(requests.exceptions.ConnectionError):
        interface(open_stash.connection())
    open_stash.faults.down = False  # back on the same port
    api, _log = interface(open_stash.connection())
    assert api.find_scene(1, fragment="id") == {"id": "1"}


def test_connections_are_kept_alive_and_going_down_resets_them(open_stash: StashEmulator) -> None:
    """Stash's Go server keeps a client's connection for its next request: a client pays one
    TCP set-up, not one per request. Going down must still cut off that kept connection."""
    api, _log = interface(open_stash.connection())
    for scene_id in (1, 2, 3):
        assert api.find_scene(scene_id, fragment="id") == {"id": str(scene_id)}
    assert len(open_stash._httpd.connections) == 1  # type: ignore[union-attr]
    open_stash.faults.down = True
    with pytest.raises(requests.exceptions.ConnectionError):
        api.find_scene(1, fragment="id")


# --- auth on the wire --------------------------------------------------------------------------


def test_401_is_empty_with_form_based_challenge(locked_stash: StashEmulator) -> None:
    answer = post(locked_stash, "{ version { version } }")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "FormBased"
    assert answer.content == b""


def test_api_key_as_query_parameter(locked_stash: StashEmulator) -> None:
    answer = requests.post(f"{locked_stash.url}/graphql?apikey={KEY}", json={"query": "{ version { version } }"},
                           timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"data": {"version": {"version": STASH_VERSION["version"]}}}


def test_images_need_the_same_auth(locked_stash: StashEmulator, library: StashLibrary) -> None:
    api, _log = interface(dict(locked_stash.connection(cookie=False), ApiKey=KEY))
    scene = api.find_scene(5, fragment="id paths { screenshot } performers { id image_path }")
    screenshot = scene["paths"]["screenshot"]
    assert screenshot.startswith(f"{locked_stash.url}/scene/5/screenshot?t=")
    assert requests.get(screenshot, timeout=10).status_code == 401
    assert requests.get(screenshot, headers={"ApiKey": KEY}, timeout=10).content.startswith(b"\x89PNG")
    assert requests.get(f"{screenshot}&apikey={KEY}", timeout=10).status_code == 200
    assert api.s.get(screenshot, timeout=10).content == png_bytes(5)  # stashapi's own session works too

    performer = next(p for p in library.performers.values() if p.image is not None)
    url = f"{locked_stash.url}/performer/{performer.id}/image"
    assert requests.get(url, timeout=10).status_code == 401
    assert api.s.get(url, timeout=10).content == performer.image
    assert api.s.get(f"{locked_stash.url}/scene/99999/screenshot", timeout=10).status_code == 404


def test_image_path_marks_stashs_placeholder_with_default_true(open_stash: StashEmulator,
                                                                library: StashLibrary) -> None:
    without, with_image = library.performers[1], library.performers[2]
    without.image, with_image.image = None, png_bytes(4242)
    api, _log = interface(open_stash.connection())
    path = api.find_performer(without.id, fragment="image_path")["image_path"]
    assert path.endswith("&default=true")
    assert "default=true" not in api.find_performer(with_image.id, fragment="image_path")["image_path"]
    assert api.s.get(path, timeout=10).content.startswith(b"\x89PNG")  # the placeholder is still an image


def test_image_urls_follow_the_host_header(open_stash: StashEmulator) -> None:
    """BaseURLMiddleware: paths are built from the Host the client used, not a fixed address."""
    answer = post(open_stash, '{ findScene(id: 1) { paths { screenshot } } }',
                  headers={"Host": f"stash.lan:{open_stash.port}"})
    assert answer.json()["data"]["findScene"]["paths"]["screenshot"].startswith(
        f"http://stash.lan:{open_stash.port}/scene/1/screenshot?t=")


# --- errors ----------------------------------------------------------------------------------


def test_invalid_document_is_422_with_null_data(open_stash: StashEmulator) -> None:
    answer = post(open_stash, "{ findScene(id: 1) { no_such_field } }")
    assert answer.status_code == 422
    body = answer.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    parse_failed = post(open_stash, "{ findScene(id: 1) { id ")
    assert parse_failed.status_code == 422
    assert parse_failed.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    bad_variable = post(open_stash, "query Q($f: FindFilterType) { findScenes(filter: $f) { count } }",
                        {"f": {"per_page": "many"}})
    assert bad_variable.status_code == 422


def test_stashapi_raises_on_422_and_logs_the_validation_code(open_stash: StashEmulator) -> None:
    api, log = interface(open_stash.connection())
    with pytest.raises(Exception, match=r"^422 Unprocessable Entity query failed"):
        api.call_GQL("query Broken { findScene(id: 1) { no_such_field } }")
    assert any(e.startswith("GRAPHQL_VALIDATION_FAILED") for e in log.errors())


def test_resolver_error_is_200_with_errors_and_partial_data(open_stash: StashEmulator) -> None:
    answer = post(open_stash, '{ findScene(id: "abc") { id } version { version } }')
    assert answer.status_code == 200
    body = answer.json()
    assert body["data"] == {"findScene": None, "version": {"version": STASH_VERSION["version"]}}
    assert body["errors"][0]["path"] == ["findScene"]
    assert "strconv.Atoi" in body["errors"][0]["message"]


def _both_executions(server: StashEmulator, query: str, variables: dict[str, Any]) -> tuple[Any, Any]:
    """The emulator's answer, and graphql-core's own execution of the same document."""
    from graphql import execute, parse

    base = "http://127.0.0.1:9999"
    _status, answer = server.run_graphql({"query": query, "variables": variables}, base)
    plain = execute(server.schema, parse(query), context_value={"base": base}, variable_values=variables)
    expected = {"data": plain.data}
    if plain.errors:
        expected = {"errors": [e.formatted for e in plain.errors], **expected}
    return answer, expected


def test_objects_shown_in_many_scenes_are_answered_as_graphql_core_answers_them(open_stash: StashEmulator) -> None:
    """The emulator completes each studio, performer, tag and group once per query: the
    answer is still graphql-core's own, byte for byte."""
    from stash.queries import FIND_SCENES

    answer, expected = _both_executions(open_stash, FIND_SCENES, {"filter": {"per_page": -1}})
    assert json.dumps(answer) == json.dumps(expected)
    studios = [s["studio"]["id"] for s in answer["data"]["findScenes"]["scenes"] if s["studio"]]
    assert len(studios) > len(set(studios))  # the same studio shown again, from the first completion


def test_an_object_whose_completion_failed_reports_the_failure_at_each_place(open_stash: StashEmulator) -> None:
    image = open_stash.schema.type_map["Studio"].fields["image_path"]  # type: ignore[union-attr]
    image.resolve = lambda obj, info: (_ for _ in ()).throw(RuntimeError("disk gone"))
    query = "{ findScenes(filter: {per_page: -1}) { scenes { id studio { id image_path } } } }"
    answer, expected = _both_executions(open_stash, query, {})
    assert json.dumps(answer) == json.dumps(expected)
    paths = [tuple(e["path"]) for e in answer["errors"]]
    shown = [s["studio"]["id"] for s in answer["data"]["findScenes"]["scenes"] if s["studio"]]
    assert len(paths) == len(set(paths)) == len(shown) > len(set(shown))  # each place told, studios repeat


def test_a_value_graphql_core_refuses_is_refused_as_graphql_core_refuses_it(open_stash: StashEmulator,
                                                                          library: StashLibrary) -> None:
    """Scalars are answered straight off their object; one that is missing where the schema
    promises a value, or that its scalar cannot represent, still gets graphql-core's error."""
    first, second = sorted(library.scenes)[:2]
    library.scenes[first].files[0].path = None  # type: ignore[assignment]  # String!
    library.scenes[second].rating100 = "eighty"  # type: ignore[assignment]  # Int
    for fields, path in (("files { path size }", ["findScenes", "scenes", 0, "files", 0, "path"]),
                         ("rating100 title", ["findScenes", "scenes", 1, "rating100"])):
        query = f"{{ findScenes(filter: {{per_page: 3}}) {{ scenes {{ id {fields} }} }} }}"
        answer, expected = _both_executions(open_stash, query, {})
        assert json.dumps(answer) == json.dumps(expected)
        assert [e["path"] for e in answer["errors"]] == [path]


def test_stashapi_returns_partial_data_and_only_logs_a_resolver_error(open_stash: StashEmulator) -> None:
    api, log = interface(open_stash.connection())
    assert api.find_scene("abc", fragment="id") is None
    assert any("strconv.Atoi" in e for e in log.errors())


def test_fail_next_is_a_locked_database_that_stashapi_raises_on(open_stash: StashEmulator) -> None:
    api, log = interface(open_stash.connection())
    open_stash.faults.fail_next(1)
    with pytest.raises(Exception, match=r"^200 OK query failed"):
        api.find_scene(1, fragment="id")  # nullable root: data is not null, but the lock bit raises
    assert any("database is locked" in e for e in log.errors())
    assert open_stash.requests[-1].status == 200
    assert api.find_scene(1, fragment="id") == {"id": "1"}  # only the next one failed


def test_fail_next_on_a_non_null_root_nulls_data(open_stash: StashEmulator) -> None:
    open_stash.faults.fail_next(1, message="boom")
    body = post(open_stash, "{ findScenes { count } }").json()
    assert body["data"] is None and body["errors"][0]["message"] == "boom"


def test_http_500_is_raised_by_stashapi_with_its_status(open_stash: StashEmulator) -> None:
    api, _log = interface(open_stash.connection())
    open_stash.faults.http_500_next(1)
    with pytest.raises(Exception, match=r"^500 Internal Server Error query failed"):
        api.find_scene(1, fragment="id")
    assert api.find_scene(1, fragment="id") == {"id": "1"}


# --- scenes ----------------------------------------------------------------------------------


def test_find_scenes_pages_cover_the_library_once(open_stash: StashEmulator, library: StashLibrary) -> None:
    api, _log = interface(open_stash.connection())
    seen: list[int] = []
    for page in range(1, 14):
        count, scenes = api.find_scenes(filter={"per_page": 10, "page": page, "sort": "id"}, fragment="id",
                                        get_count=True)
        assert count == len(library.scenes)
        seen += [int(s["id"]) for s in scenes]
    assert seen == sorted(library.scenes)
    assert open_stash.requests[-1].variables["filter"] == {"per_page": 10, "page": 13, "sort": "id", "q": ""}


def test_find_scenes_defaults_all_and_count_only(open_stash: StashEmulator, library: StashLibrary) -> None:
    api, _log = interface(open_stash.connection())
    assert len(api.find_scenes(fragment="id")) == len(library.scenes)  # stashapi's default per_page: -1
    default = post(open_stash, "{ findScenes { count scenes { id } } }").json()["data"]["findScenes"]
    assert default["count"] == len(library.scenes) and len(default["scenes"]) == 25
    count_only = post(open_stash, "{ findScenes(filter: {per_page: 0}) { count scenes { id } } }").json()
    assert count_only["data"]["findScenes"] == {"count": len(library.scenes), "scenes": []}
    low_page = post(open_stash, "{ findScenes(filter: {page: -3, per_page: 2, sort: \"id\"}) { scenes { id } } }")
    assert low_page.json()["data"]["findScenes"]["scenes"] == [{"id": "1"}, {"id": "2"}]
    beyond = api.find_scenes(filter={"per_page": 50, "page": 9}, fragment="id", get_count=True)
    assert beyond == (len(library.scenes), [])


def test_find_scenes_sorts(open_stash: StashEmulator, library: StashLibrary) -> None:
    api, _log = interface(open_stash.connection())
    desc = api.find_scenes(filter={"per_page": 5, "sort": "id", "direction": "DESC"}, fragment="id")
    assert [int(s["id"]) for s in desc] == sorted(library.scenes, reverse=True)[:5]
    by_updated = api.find_scenes(filter={"per_page": -1, "sort": "updated_at", "direction": "DESC"},
                                 fragment="id updated_at")
    stamps = [s["updated_at"] for s in by_updated]
    assert stamps == sorted(stamps, reverse=True) and len(stamps) == len(library.scenes)
    titled = [s for s in api.find_scenes(filter={"per_page": -1, "sort": "title"}, fragment="id title")]
    assert {int(s["id"]) for s in titled} == set(library.scenes)


def test_an_unknown_sort_is_refused(open_stash: StashEmulator) -> None:
    """Since CVE-2024-32231 Stash checks sort against an allow-list; the failure is a resolver error."""
    body = post(open_stash, '{ findScenes(filter: {sort: "title; DROP TABLE scenes"}) { count } }').json()
    assert body["data"] is None and "invalid sort" in body["errors"][0]["message"]


def test_paginate_with_a_callback_walks_every_page(open_stash: StashEmulator, library: StashLibrary) -> None:
    api, _log = interface(open_stash.connection())
    pages: list[list[int]] = []
    api.find_scenes(filter={"per_page": 25, "sort": "id"}, fragment="id",
                    callback=lambda items: pages.append([int(i["id"]) for i in items]))
    assert [len(p) for p in pages] == [25, 25, 25, 25, 20]
    assert sum(pages, []) == sorted(library.scenes)


def test_find_scene_by_id_and_missing_id(open_stash: StashEmulator, library: StashLibrary) -> None:
    api, log = interface(open_stash.connection())
    scene = api.find_scene(7)  # stashapi's generated fragment, whole
    stored = library.scenes[7]
    assert scene["id"] == "7" and scene["title"] == stored.title
    assert [f["path"] for f in scene["files"]] == [f.path for f in stored.files]  # primary first
    assert scene["files"][0]["parent_folder"] == {"id": str(library.folder_id(stored.files[0].folder))}
    assert scene["updated_at"] == stash_timestamp(stored.updated_at)
    assert api.find_scene(99999) is None
    assert log.errors() == []  # an unknown id is null, not an error
    assert post(open_stash, '{ findScene(id: "99999") { id } }').json() == {"data": {"findScene": None}}


def test_ids_come_in_as_json_ints(open_stash: StashEmulator) -> None:
    answer = post(open_stash, "query Q($id: ID) { findScene(id: $id) { id } }", {"id": 4})
    assert answer.json() == {"data": {"findScene": {"id": "4"}}}


def test_deprecated_scene_ids_and_ids(open_stash: StashEmulator) -> None:
    body = post(open_stash, "{ a: findScenes(scene_ids: [3, 1]) { count } b: findScenes(ids: [\"2\"]) { count } }")
    assert body.json()["data"] == {"a": {"count": 2}, "b": {"count": 1}}


# --- timestamp filters ----------------------------------------------------------------------


def _ids(api: Any, scene_filter: dict[str, Any]) -> set[int]:
    return {int(s["id"]) for s in api.find_scenes(f=scene_filter, filter={"per_page": -1}, fragment="id")}


def _string_matches(library: StashLibrary, column: str, test: Any) -> set[int]:
    return {s.id for s in library.scenes.values() if test(library.stamp(getattr(s, column)))}


def test_updated_at_greater_than_compares_stored_text(open_stash: StashEmulator, library: StashLibrary) -> None:
    api, _log = interface(open_stash.connection())
    pivot = library.stamp(library.scenes[60].updated_at)
    got = _ids(api, {"updated_at": {"value": pivot, "modifier": "GREATER_THAN"}})
    assert got == _string_matches(library, "updated_at", lambda v: v > pivot)
    assert 60 not in got and 0 < len(got) < len(library.scenes)
    less = _ids(api, {"created_at": {"value": pivot, "modifier": "LESS_THAN"}})
    assert less == _string_matches(library, "created_at", lambda v: v < pivot)
    equal = _ids(api, {"updated_at": {"value": pivot, "modifier": "EQUALS"}})
    assert 60 in equal


def test_between_is_inclusive_and_defaults_its_upper_bound_to_tomorrow(open_stash: StashEmulator,
                                                                        library: StashLibrary) -> None:
    api, _log = interface(open_stash.connection())
    low, high = library.stamp(library.scenes[10].created_at), library.stamp(library.scenes[30].created_at)
    got = _ids(api, {"created_at": {"value": low, "value2": high, "modifier": "BETWEEN"}})
    assert got == _string_matches(library, "created_at", lambda v: low <= v <= high)
    assert {10, 30} <= got
    outside = _ids(api, {"created_at": {"value": low, "value2": high, "modifier": "NOT_BETWEEN"}})
    assert outside == set(library.scenes) - got

    now = time.time()  # Stash binds time.Now() + 1 day: the real clock, not the emulator's
    library.update_scene(1, now=now + 3600)  # within "now + 1 day"
    library.update_scene(2, now=now + 3 * 86400)  # beyond it (a clock skewed ahead)
    library.update_scene(3, now=now - 3600)  # before the lower bound
    since = library.stamp(now - 60)
    first_three = {"id": {"value": 4, "modifier": "LESS_THAN"}}  # whatever year the generator reached
    assert _ids(api, {"updated_at": {"value": since, "modifier": "BETWEEN"}, **first_three}) == {1}
    assert _ids(api, {"updated_at": {"value": since, "modifier": "GREATER_THAN"}, **first_three}) == {1, 2}


def test_relative_values_do_not_work_in_filters(open_stash: StashEmulator, library: StashLibrary) -> None:
    """TimestampCriterionInput.value is a String: "<24h" is compared as text, so it matches nothing."""
    api, _log = interface(open_stash.connection())
    library.update_scene(3, now=time.time())
    assert _ids(api, {"updated_at": {"value": ">24h", "modifier": "GREATER_THAN"}}) == set()
    assert _ids(api, {"updated_at": {"value": "<24h", "modifier": "LESS_THAN"}}) == set(library.scenes)


def test_stored_timestamps_are_local_rfc3339_and_compared_as_text() -> None:
    """A server in +02:00 stores `...T14:00:00+02:00`; a client filtering with `...T12:00:00Z`
    (the same instant) gets string-comparison answers, not instant-comparison ones."""
    plus_two = timezone(timedelta(hours=2))
    library = StashLibrary(tz=plus_two)
    noon_utc = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc).timestamp()
    library.add_scene(files=["/data/stash/a.mp4"], now=noon_utc - 3600)  # 11:00Z, before noon
    library.add_scene(files=["/data/stash/b.mp4"], now=noon_utc + 3600)  # 13:00Z, after noon
    with StashEmulator(library) as server:
        api, _log = interface(server.connection())
        stamps = [s["updated_at"] for s in api.find_scenes(filter={"sort": "id"}, fragment="updated_at")]
        assert stamps == ["2024-05-01T13:00:00+02:00", "2024-05-01T15:00:00+02:00"]
        # "2024-05-01T13:00:00+02:00" > "2024-05-01T12:00:00Z" as text, though it is 11:00Z
        assert _ids(api, {"updated_at": {"value": "2024-05-01T12:00:00Z", "modifier": "GREATER_THAN"}}) == {1, 2}
        # sent in the server's own layout and offset, the comparison is right
        assert _ids(api, {"updated_at": {"value": "2024-05-01T14:00:00+02:00", "modifier": "GREATER_THAN"}}) == {2}


def test_utc_is_stored_with_z() -> None:
    """Go's RFC 3339 layout writes `Z` for every zero offset, whatever the zone is called."""
    instant = datetime(2024, 1, 15, 9, 30, 5, tzinfo=timezone.utc).timestamp()
    assert stash_timestamp(instant) == "2024-01-15T09:30:05Z"
    assert stash_timestamp(instant, timezone(timedelta(0), "GMT")) == "2024-01-15T09:30:05Z"
    assert stash_timestamp(instant, timezone(timedelta(hours=-5))) == "2024-01-15T04:30:05-05:00"
    assert stash_timestamp(instant + 0.9) == "2024-01-15T09:30:05Z"  # second precision, truncated


# --- configuration, look-ups, scan -----------------------------------------------------------


def test_plugin_settings_only_for_stored_ids(open_stash: StashEmulator) -> None:
    api, _log = interface(open_stash.connection())
    assert api.find_plugins_config("Stash2Plex") == {}  # never saved: absent, not an error
    open_stash.set_plugin_settings("Stash2Plex", {"plex_url": "http://plex:32400", "max_tags": 20, "enabled": True})
    open_stash.set_plugin_settings("Empty", {})
    assert api.find_plugins_config("Stash2Plex") == {"plex_url": "http://plex:32400", "max_tags": 20, "enabled": True}
    query = "query P($i: [ID!]) { configuration { plugins(include: $i) } }"
    assert post(open_stash, query, {"i": ["Stash2Plex", "Empty", "Nope"]}).json()["data"]["configuration"][
        "plugins"] == {"Stash2Plex": {"plex_url": "http://plex:32400", "max_tags": 20, "enabled": True}}
    everything = post(open_stash, "{ configuration { plugins } }").json()["data"]["configuration"]["plugins"]
    assert set(everything) == {"Stash2Plex"}  # an empty map is left out without include too


def test_plugin_ids_are_exact_keys_so_an_old_lowercased_id_needs_a_second_look(open_stash: StashEmulator) -> None:
    """Before v0.26 Stash stored `stash2plex`; the key Stash answers with is the stored one."""
    open_stash.set_plugin_settings("stash2plex", {"enabled": False})
    api, _log = interface(open_stash.connection())
    assert api.find_plugins_config("Stash2Plex") == {}
    assert api.find_plugins_config(["Stash2Plex", "stash2plex"]) == {"stash2plex": {"enabled": False}}


def test_configure_plugin_overwrites_the_whole_map(open_stash: StashEmulator) -> None:
    open_stash.set_plugin_settings("Stash2Plex", {"a": 1, "b": 2})
    answer = post(open_stash, 'mutation { configurePlugin(plugin_id: "Stash2Plex", input: {b: 3}) }')
    assert answer.json()["data"]["configurePlugin"] == {"b": 3}
    assert open_stash.plugin_settings["Stash2Plex"] == {"b": 3}


def test_studio_performer_and_tag_lookups(open_stash: StashEmulator, library: StashLibrary) -> None:
    child = library.studios[3]
    child.parent_id = 1
    api, _log = interface(open_stash.connection())
    studio = api.find_studio(child.id)
    assert studio["name"] == child.name and studio["parent_studio"] == {"id": str(child.parent_id)}
    assert studio["scene_count"] == sum(1 for s in library.scenes.values() if s.studio_id == child.id)
    assert api.find_studio(child.name)["id"] == str(child.id)  # by name, via findStudios

    performer = library.performers[3]
    assert api.find_performer(3)["name"] == performer.name
    assert api.find_performer(performer.name)["id"] == "3"

    tag = next(t for t in library.tags.values() if t.parent_ids)
    found = api.find_tag(tag.id)
    assert found["name"] == tag.name and found["parents"] == [{"id": str(tag.parent_ids[0])}]
    assert api.find_tag(tag.name)["id"] == str(tag.id)
    assert api.find_tag(10**6) is None
    names = {t["name"] for t in api.find_tags(q=tag.name, fragment="name")}
    assert tag.name in names


def test_metadata_scan_reads_scan_defaults_then_queues_a_job(open_stash: StashEmulator) -> None:
    api, _log = interface(open_stash.connection())
    job = api.metadata_scan(["/data/stash/Some Studio/2020"])
    assert open_stash.scans == [{"paths": ["/data/stash/Some Studio/2020"], "rescan": False,
                                 "scanGenerateCovers": False, "scanGeneratePreviews": False,
                                 "scanGenerateImagePreviews": False, "scanGenerateSprites": False,
                                 "scanGeneratePhashes": False, "scanGenerateThumbnails": False,
                                 "scanGenerateClipPreviews": False}]
    assert api.find_job(job)["status"] == "FINISHED"
    api.metadata_scan(["/data/stash/x"], flags={"rescan": True})
    assert open_stash.scans[-1] == {"paths": ["/data/stash/x"], "rescan": True}


def test_request_log_names_operations_stashapi_does_not_name(open_stash: StashEmulator) -> None:
    """stashapi posts only `query`; the log takes the operation's name from the document."""
    api, _log = interface(open_stash.connection())
    open_stash.reset_log()
    api.find_scene(1, fragment="id")
    api.find_scenes(filter={"per_page": 1}, fragment="id")
    assert open_stash.count("FindScene") == 1 and open_stash.count("FindScenes") == 1
    assert open_stash.count() == 2


# --- the generator --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big() -> StashLibrary:
    return generate_library(2000, seed=5)


def test_generator_is_deterministic_per_seed() -> None:
    def digest(lib: StashLibrary) -> list[tuple]:
        return [(s.id, s.title, s.date, s.details, s.studio_id, tuple(s.tag_ids), tuple(s.performer_ids),
                 tuple((f.path, f.size, f.duration) for f in s.files), s.created_at, s.updated_at)
                for s in lib.scenes.values()]

    one, again, other = generate_library(300, seed=9), generate_library(300, seed=9), generate_library(300, seed=10)
    assert digest(one) == digest(again)
    assert [p.name for p in one.performers.values()] == [p.name for p in again.performers.values()]
    assert digest(one) != digest(other)


def test_generator_makes_awkward_text(big: StashLibrary) -> None:
    titles = [s.title for s in big.scenes.values()]
    assert any(t is None for t in titles)
    assert any(t and not t.isascii() for t in titles)
    assert any(t and any(ord(c) > 0xFFFF for c in t) for t in titles)  # astral plane (emoji)
    assert any(s.details and len(s.details) > 2000 for s in big.scenes.values())
    assert any(not p.name.isascii() for p in big.performers.values())
    assert any(not t.name.isascii() for t in big.tags.values())


def test_generator_leaves_fields_missing_and_dates_partial(big: StashLibrary) -> None:
    scenes = list(big.scenes.values())
    assert any(s.studio_id is None for s in scenes)
    assert any(s.date is None for s in scenes)
    assert any(s.details is None for s in scenes)
    assert any(s.rating100 is None for s in scenes)
    assert any(not s.tag_ids for s in scenes) and any(not s.performer_ids for s in scenes)
    shapes = {len(s.date) for s in scenes if s.date}
    assert shapes == {4, 7, 10}  # YYYY, YYYY-MM, YYYY-MM-DD
    assert max(len(s.tag_ids) for s in scenes) >= 40 and max(len(s.performer_ids) for s in scenes) >= 10


def test_generator_makes_multi_file_scenes_and_shared_basenames(big: StashLibrary) -> None:
    scenes = list(big.scenes.values())
    assert any(len(s.files) >= 2 for s in scenes)
    folders_by_name: dict[str, set[str]] = {}
    for s in scenes:
        for f in s.files:
            folders_by_name.setdefault(f.basename, set()).add(f.folder)
    assert any(len(folders) >= 2 for folders in folders_by_name.values())
    paths = [f.path for s in scenes for f in s.files]
    assert len(paths) == len(set(paths))  # the same name, never the same file
    assert len({f.id for s in scenes for f in s.files}) == len(paths)


def test_generator_timestamps_spread_and_ordered(big: StashLibrary) -> None:
    scenes = list(big.scenes.values())
    assert all(s.updated_at >= s.created_at for s in scenes)
    years = {datetime.fromtimestamp(s.created_at, timezone.utc).year for s in scenes}
    assert len(years) >= 5
    assert sum(s.updated_at - s.created_at > 86400 for s in scenes) > len(scenes) // 5  # edited later


def test_generated_awkward_scene_survives_the_wire(open_stash: StashEmulator, library: StashLibrary) -> None:
    """Unicode and long text come back byte-identical through JSON and stashapi."""
    api, _log = interface(open_stash.connection())
    scene = next(s for s in library.scenes.values() if s.title and not s.title.isascii())
    got = api.find_scene(scene.id, fragment="title details date files { path }")
    assert got["title"] == scene.title and got["details"] == scene.details and got["date"] == scene.date
    assert [f["path"] for f in got["files"]] == [f.path for f in scene.files]
