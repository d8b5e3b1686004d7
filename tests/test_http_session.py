"""`base.http_session`: the shortcuts change nothing a server sees, and never hand out a
closed connection pool."""

from __future__ import annotations

import requests

from base.http_session import settle
from emulators.plex_server import PlexEmulator


def test_a_pool_closed_since_it_was_kept_is_looked_up_again() -> None:
    """A kept pool someone closed since (urllib3 1.x closes a pool its manager evicts) must
    not fail the next request: it gets a live pool instead."""
    with PlexEmulator() as plex:
        session = requests.Session()
        settle(session)
        headers = {"X-Plex-Token": plex.token}
        assert session.get(plex.url + "/identity", headers=headers, timeout=10).status_code == 200
        manager = session.get_adapter(plex.url).poolmanager
        for key in list(manager.pools.keys()):
            manager.pools.pop(key).close()
        assert session.get(plex.url + "/library/sections", headers=headers, timeout=10).status_code == 200


def test_a_library_session_settled_after_it_was_made_sends_what_it_would_have_sent() -> None:
    """stashapi makes its own session and sets its headers and cookies; settled afterwards, a
    plain request from it carries them, and a cookie set later still goes out."""
    with PlexEmulator() as plex:
        session = requests.Session()
        session.headers.update({"ApiKey": "k-1"})
        settle(session)
        first = session.get(plex.url + "/identity", timeout=10).request
        session.cookies.set("session", "c-1")
        second = session.get(plex.url + "/identity", timeout=10).request
    assert first.headers["ApiKey"] == "k-1" and "Cookie" not in first.headers
    assert second.headers["ApiKey"] == "k-1" and second.headers["Cookie"] == "session=c-1"
