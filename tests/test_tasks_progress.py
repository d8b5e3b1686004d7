"""One progress bar over a listing and the drain that takes its jobs meanwhile (`SharedBar`)."""

from __future__ import annotations

from tasks.drain import SharedBar


def test_the_listing_fills_its_share_and_the_drain_the_rest() -> None:
    shown: list[float] = []
    bar = SharedBar(shown.append, 0.3)
    bar.listing(0.5)
    bar.drain(0.5)
    bar.listing(1.0)
    bar.drain(1.0)
    assert shown == [0.15, 0.15 + 0.35, 0.3 + 0.35, 1.0]


def test_the_bar_never_moves_back_when_the_drain_learns_of_more_jobs() -> None:
    """The drain's fraction is over jobs projected from the pages listed so far; a page that
    queues more than projected lowers it, and the bar then waits instead of going back."""
    shown: list[float] = []
    bar = SharedBar(shown.append, 0.3)
    bar.drain(0.4)
    bar.drain(0.2)  # more jobs than projected
    bar.drain(0.3)
    bar.listing(0.5)
    assert shown == sorted(shown) and shown == [0.7 * 0.4, 0.15 + 0.7 * 0.3]
