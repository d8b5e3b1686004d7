"""The emulators' network latency: every request waits the configured round trip, and one
request's wait never holds up another connection (the servers are threaded)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from emulators.plex_server import PlexEmulator
from emulators.stage import Network, stage
from emulators.stash_library import generate_library
from emulators.stash_server import StashEmulator

DELAY = 0.02
VERSION_QUERY = {"query": "query { version { version } }"}


def plex_get(plex: PlexEmulator) -> int:
    return requests.get(plex.url + "/identity", headers={"X-Plex-Token": plex.token}, timeout=30).status_code


def stash_post(stash: StashEmulator) -> int:
    return requests.post(stash.url + "/graphql", json=VERSION_QUERY, timeout=30).status_code


def test_plex_waits_the_latency_on_every_request_and_faults_clear_keeps_it() -> None:
    from plexapi.server import PlexServer

    with PlexEmulator(latency=DELAY) as plex:
        key = plex.add_item("/media/stash/a.mp4", title="A")
        plex.faults.clear()  # a test's fault reset is not the network going away
        started = time.perf_counter()
        server = PlexServer(plex.url, plex.token)
        server.fetchItem(key)
        plex_get(plex)
        elapsed = time.perf_counter() - started
        served = plex.count()
    assert served >= 3
    assert elapsed >= served * DELAY


def test_stash_waits_the_latency_on_every_request_images_included() -> None:
    with StashEmulator(generate_library(2, seed=1), latency=DELAY) as stash:
        started = time.perf_counter()
        statuses = [stash_post(stash) for _ in range(5)]
        statuses.append(requests.get(stash.url + "/scene/1/screenshot", timeout=30).status_code)
        elapsed = time.perf_counter() - started
        served = len(stash.requests)
    assert statuses == [200] * 6 and served == 6
    assert elapsed >= served * DELAY


def overlapping_sleep(parties: int, seen: list[float]) -> Callable[[float], None]:
    """A sleep that returns only once `parties` requests are waiting in it at the same time:
    a server that served one connection at a time would never get there (the barrier breaks
    after its timeout and the requests fail)."""
    barrier = threading.Barrier(parties, timeout=30)

    def sleep(seconds: float) -> None:
        seen.append(seconds)
        barrier.wait()

    return sleep


@pytest.mark.parametrize("server", ["plex", "stash"])
def test_requests_in_flight_wait_at_the_same_time(server: str) -> None:
    parties = 3
    seen: list[float] = []
    sleep = overlapping_sleep(parties, seen)
    if server == "plex":
        emulator: PlexEmulator | StashEmulator = PlexEmulator(latency=DELAY, sleep=sleep).start()
        call: Callable[[], int] = lambda: plex_get(emulator)  # type: ignore[arg-type]  # noqa: E731
    else:
        emulator = StashEmulator(latency=DELAY, sleep=sleep)
        call = lambda: stash_post(emulator)  # type: ignore[arg-type]  # noqa: E731
    try:
        with ThreadPoolExecutor(parties) as pool:
            statuses = list(pool.map(lambda _: call(), range(parties)))
    finally:
        emulator.__exit__(None, None, None)
    assert statuses == [200] * parties
    assert seen == [DELAY] * parties


def test_stage_gives_each_emulator_its_network_delay() -> None:
    with stage(2, network=Network(plex=0.03, stash=0.01)) as st:
        assert (st.plex.latency, st.stash.latency) == (0.03, 0.01)
        assert (st.plex.faults.latency, st.stash.faults.latency) == (0.0, 0.0)
    with stage(2) as st:
        assert (st.plex.latency, st.stash.latency) == (0.0, 0.0)
