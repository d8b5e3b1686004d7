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


def test_a_target_urllib3_would_not_change_skips_its_re_encoding_and_every_other_gets_its_answer() -> None:
    """The target shortcut must give urllib3's own answer for any target: random ones over
    an alphabet of what matters (escapes in either case, a lone "%", non-ASCII, a space,
    "?" and "#"), and one already in urllib3's form comes back as the very same string
    (the byte walk was skipped)."""
    import random

    import urllib3.connectionpool
    from urllib3.util.url import _encode_target as urllib3_answer

    settle(requests.Session())
    shortcut = urllib3.connectionpool._encode_target
    assert shortcut is not urllib3_answer
    rng = random.Random(7)
    alphabet = ["a", "Z", "0", "-", "_", ".", "~", "!", "$", "&", "'", "(", ")", "*", "+", ",", ";", "=", ":",
                "@", "/", "?", "#", " ", "%", "%2f", "%2F", "%C3%A9", "%e9", "%G1", "[", "]", "é", "\u2603", "\""]
    for _ in range(5000):
        target = "/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert shortcut(target) == urllib3_answer(target), target
    edit = "/library/sections/1/all?summary.value=Caf%C3%A9%20au%20lait%21&title.locked=1&type=1&id=5"
    assert shortcut(edit) is edit
    assert urllib3_answer(edit) == edit
