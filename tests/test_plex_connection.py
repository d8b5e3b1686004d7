"""plex.connection's query strings: built once in the form they go out in, sent as built."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plexapi.utils import joinArgs
from urllib3.util.url import _encode_target

from base.http_session import sent_as_is
from emulators.plex_server import PlexEmulator
from plex.connection import PlexConnection, RecordingSession, query_string

BASE = "http://127.0.0.1:32400/library/sections/1/all"
KEYS = st.one_of(st.sampled_from(["title.value", "summary.value", "genre.locked", "id", "type"]),
                 st.builds(lambda field, i: f"{field}[{i}].tag.tag", st.sampled_from(["genre", "actor", "collection"]),
                           st.integers(0, 300)))
VALUES = st.one_of(st.text(), st.integers(), st.sampled_from(["Ærø 夜景 😀", "a&b=c?d#e%20f", "100%", "[x]", "~-._"]))
PARAMS = st.dictionaries(KEYS, VALUES, min_size=1, max_size=12)
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def on_the_wire(url: str) -> str:
    """The request target requests and urllib3 send for `url`, each re-encoding it as usual."""
    return _encode_target(requests.Request("PUT", url).prepare().path_url)


@EXAMPLES
@given(params=PARAMS)
def test_the_query_is_what_plexapi_would_have_sent(params: dict[str, object]) -> None:
    assert "/library/sections/1/all?" + query_string(params) == on_the_wire(BASE + joinArgs(params))


@EXAMPLES
@given(params=PARAMS)
def test_a_built_query_goes_out_as_built(params: dict[str, object]) -> None:
    query = query_string(params)
    assert sent_as_is(query)
    prepared = RecordingSession().prepare_request(requests.Request("PUT", f"{BASE}?{query}"))
    assert prepared.url == f"{BASE}?{query}"
    assert on_the_wire(prepared.url) == on_the_wire(f"{BASE}?{query}")


@EXAMPLES
@given(query=st.text(alphabet=st.sampled_from("aZ09-._~!$&'()*+,;=:@/?%#[] é5FfA"), max_size=40))
def test_any_query_is_prepared_as_requests_would(query: str) -> None:
    """The shortcut is taken only where it changes nothing; any other query is re-encoded."""
    session = RecordingSession()
    ours = session.prepare_request(requests.Request("GET", f"{BASE}?{query}")).url
    theirs = requests.Session().prepare_request(requests.Request("GET", f"{BASE}?{query}")).url
    assert on_the_wire(ours) == on_the_wire(theirs)
    if sent_as_is(query):
        assert ours == f"{BASE}?{query}"


HEADERS = st.dictionaries(st.sampled_from(["X-Plex-Token", "X-Plex-Product", "Accept", "X-Plex-Container-Start"]),
                          st.text(alphabet="abcXYZ019-_.", min_size=1, max_size=12), max_size=4)


@EXAMPLES
@given(requests_=st.lists(st.tuples(st.sampled_from(["GET", "PUT", "POST", "DELETE"]),
                                    st.sampled_from(["/library/metadata/7/posters", "/identity", "/", "/a b/ü",
                                                     "/library/sections/1/all?type=1&id=7", "/x?file=a b"]),
                                    HEADERS, st.one_of(st.none(), st.binary(max_size=64))), min_size=1, max_size=6))
def test_a_plain_request_is_prepared_as_requests_would_prepare_it(
        requests_: list[tuple[str, str, dict[str, str], bytes | None]]) -> None:
    """Prepared from a template or not, the same method, URL, headers and body go out; a
    session that holds a cookie is prepared the full way, and so sends it."""
    ours, theirs = RecordingSession(), requests.Session()
    for i, (method, path, headers, data) in enumerate(requests_):
        if i == len(requests_) - 1:
            ours.cookies.set("proxy", "c1")
            theirs.cookies.set("proxy", "c1")
        a = ours.prepare_request(requests.Request(method, "http://Plex.local:32400" + path, headers=headers, data=data))
        b = theirs.prepare_request(requests.Request(method, "http://Plex.local:32400" + path, headers=headers, data=data))
        assert (a.method, a.url, dict(a.headers), a.body) == (b.method, b.url, dict(b.headers), b.body)


def test_escapes_that_requests_would_change_are_not_sent_as_is() -> None:
    assert sent_as_is("a=%C3%A9&b=%5B")
    assert not sent_as_is("a=%c3%a9")  # urllib3 puts escapes in upper case
    assert not sent_as_is("a=%41")  # requests turns an escaped "A" back into "A"
    assert not sent_as_is("a=b c")  # a space is escaped
    assert not sent_as_is("a[0]=b")  # urllib3 escapes a bracket in a query
    assert not sent_as_is("a=b#c")  # a fragment


@pytest.fixture
def plex() -> Iterator[PlexEmulator]:
    with PlexEmulator() as emulator:
        yield emulator


def test_an_edit_reaches_plex_with_every_value_intact(plex: PlexEmulator, tmp_path: Path) -> None:
    key = plex.add_item("/media/stash/one.mp4")
    params = {"title.value": "Ærø 夜景 😀 100% a&b=c?d#e", "summary.value": "[x] ~-._ +plus",
              "genre[0].tag.tag": "Zoë", "genre[1].tag.tag": "a=b", "id": key, "type": 1}
    conn = PlexConnection(plex.url, plex.token, data_dir=tmp_path)
    conn.query(f"/library/sections/1/all?{query_string(params)}", "PUT", read=False)
    sent = [r for r in plex.requests if r.method == "PUT"][-1]
    assert {k: sent.query[k] for k in params} == {k: str(v) for k, v in params.items()}
