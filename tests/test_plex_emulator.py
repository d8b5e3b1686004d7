"""The emulated Plex's HTTP answers to plexapi calls whose real behaviour is known: the two
ways to set a user rating and the one way that is silently ignored."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from emulators.plex_server import PlexEmulator


@pytest.fixture
def plex() -> Iterator[PlexEmulator]:
    with PlexEmulator() as emulator:
        yield emulator


def movie(plex: PlexEmulator, key: int) -> Any:
    os.environ["PLEXAPI_PLEXAPI_AUTORELOAD"] = "false"
    from plexapi.server import PlexServer

    return PlexServer(plex.url, plex.token).fetchItem(key)


def test_rate_sets_and_clears_the_user_rating(plex: PlexEmulator) -> None:
    """plexapi's test suite against a real server: rate(10.0) then reload shows
    userRating 10.0 and a lastRatedAt; rate() clears it. No field lock is involved."""
    key = plex.add_item("/media/stash/a.mp4")
    item = movie(plex, key)
    item.rate(8.3)
    rate = [r for r in plex.requests if r.path == "/:/rate"]
    assert [(r.method, r.query) for r in rate] == [
        ("PUT", {"key": str(key), "identifier": "com.plexapp.plugins.library", "rating": "8.3"})]
    item.reload()
    assert item.userRating == 8.3 and item.lastRatedAt is not None
    assert "userRating" not in plex.item(key).locks
    item.rate()
    item.reload()
    assert item.userRating is None and item.lastRatedAt is None


def test_rate_refuses_what_is_not_a_library_rating(plex: PlexEmulator) -> None:
    from plexapi.exceptions import BadRequest, NotFound

    key = plex.add_item("/media/stash/a.mp4")
    server = movie(plex, key)._server
    with pytest.raises(BadRequest):
        server.query(f"/:/rate?key={key}&identifier=com.plexapp.plugins.library&rating=11",
                     method=server._session.put)
    with pytest.raises(BadRequest):
        server.query(f"/:/rate?key={key}&rating=5", method=server._session.put)
    with pytest.raises(NotFound):
        server.query("/:/rate?key=999&identifier=com.plexapp.plugins.library&rating=5",
                     method=server._session.put)
    assert "userRating" not in plex.item(key).fields


def test_edit_user_rating_value_sets_and_locks_it(plex: PlexEmulator) -> None:
    """editUserRating sends userRating.value/.locked in the edit; plexapi's real-server test
    reads back the value and a locked `userRating` field."""
    key = plex.add_item("/media/stash/a.mp4")
    item = movie(plex, key)
    item.editUserRating(7.0)
    item.reload()
    assert item.userRating == 7.0
    assert [f.name for f in item.fields if f.locked] == ["userRating"]
    item.editUserRating(None, locked=False)
    item.reload()
    assert item.userRating is None and not item.fields


def test_bare_user_rating_in_an_edit_is_ignored(plex: PlexEmulator) -> None:
    """`edit(userRating=4.0)` reaches Plex as `userRating=4.0`: answered 200, nothing saved
    (python-plexapi #354)."""
    key = plex.add_item("/media/stash/a.mp4", userRating=2.0)
    movie(plex, key).edit(userRating=4.0)
    assert plex.count("PUT", "/library/sections/1/all") == 1
    assert plex.requests[-1].status == 200
    assert plex.item(key).fields["userRating"] == 2.0


def test_agent_refresh_keeps_the_user_rating(plex: PlexEmulator) -> None:
    key = plex.add_item("/media/stash/a.mp4", title="T", studio="S")
    item = movie(plex, key)
    item.rate(6.0)
    item.refresh()
    after = plex.item(key)
    assert after.fields.get("userRating") == 6.0 and "studio" not in after.fields


# --- faults that pace a test by events, not by the clock ------------------------------------


def get_root(plex: PlexEmulator, timeout: float = 30) -> int:
    import requests

    return requests.get(plex.url + "/identity", timeout=timeout).status_code


def test_a_held_request_is_answered_when_the_hold_ends_and_not_before(plex: PlexEmulator) -> None:
    import threading

    answers: list[int] = []
    with plex.faults.holding():
        asker = threading.Thread(target=lambda: answers.append(get_root(plex)))
        asker.start()
        asker.join(timeout=1.0)  # a bound on a wait that must NOT end: no condition to wait for
        assert asker.is_alive() and answers == [] and plex.count() == 0
    asker.join(timeout=30)
    assert answers == [200] and plex.count() == 1
    assert get_root(plex) == 200  # after the block nothing is held


def test_a_hold_applies_only_while_its_condition_is_true(plex: PlexEmulator) -> None:
    armed = False
    with plex.faults.holding(when=lambda: armed, ceiling=30):
        assert get_root(plex, timeout=10) == 200  # not armed yet: answered at once


def test_a_held_request_is_answered_after_the_ceiling_at_the_latest(plex: PlexEmulator) -> None:
    with plex.faults.holding(ceiling=0.2):
        assert get_root(plex) == 200


def test_down_after_n_writes_resets_the_next_request_and_stops_listening(plex: PlexEmulator) -> None:
    import requests

    key = plex.add_item("/media/stash/a.mp4")
    headers = {"X-Plex-Token": plex.token}
    edit = f"{plex.url}/library/sections/1/all"
    plex.faults.down_after(2)
    for title in ("one", "two"):
        assert get_root(plex) == 200  # reads do not count
        assert requests.put(edit, params={"type": 1, "id": key, "title.value": title},
                            headers=headers, timeout=10).status_code == 200
    with pytest.raises(requests.ConnectionError):
        get_root(plex)  # the next request of any kind: no answer
    assert plex.faults.down
    with pytest.raises(requests.ConnectionError):
        get_root(plex)  # and nobody listens any more
    assert plex.item(key).title == "two" and plex.count("PUT") == 2
    plex.faults.down = False
    assert get_root(plex) == 200  # back on the same port, the countdown spent


def test_queued_error_answers_not_yet_given_can_be_dropped(plex: PlexEmulator) -> None:
    """`faults.clear_answers`: a burst of errors that no request took is over; the other
    faults (here the revoked token) stay as they are."""
    import requests

    def status() -> int:
        return requests.get(f"{plex.url}/library/sections", headers={"X-Plex-Token": plex.token}, timeout=5).status_code

    plex.faults.error_burst(3, 503)
    plex.faults.rate_limit(2, 1)
    assert status() == 503
    plex.faults.clear_answers()
    assert status() == 200
    plex.faults.error_burst(1)
    plex.faults.revoke_token()
    plex.faults.clear_answers()
    assert status() == 401
