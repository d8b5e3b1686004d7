"""The quality gate: a Stash scene that carries no metadata yet never clears a value in Plex.

`Scene.has_metadata` is the definition (a table over every field), and `desired_state` is
where it applies, so every path that syncs (hooks, Sync All/Recent, reconcile, fan-out, dry
run) passes through it. The end-to-end scenario is in tests/test_e2e_fanout.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from base.settings import load_settings
from plex.desired import Actor, desired_state
from plex.diff import plan_edit
from plex.records import CurrentState
from stash.records import Performer, Scene, SceneFile, Studio

FILE = (SceneFile("/data/stash/new/a.mp4", 10, 5.0),)
COVER = "http://stash:9999/scene/9/screenshot?t=1"


def bare(**fields: Any) -> Scene:
    """What a file scan creates: an id, the file, a generated cover; nothing a person set."""
    return Scene(**{"id": 9, "files": FILE, "screenshot_url": COVER, **fields})


@pytest.mark.parametrize(("fields", "identified"), [
    ({}, False),
    ({"title": "A title"}, True),
    ({"details": "Some details"}, True),
    ({"date": "2021"}, True),
    ({"studio": Studio("1", "Studio")}, True),
    ({"performers": (Performer("1", "Ann"),)}, True),
    ({"tags": ("tag",)}, True),
    # Blank text is no metadata: it would only ever clear.
    ({"title": "   ", "details": "\n\t", "date": " "}, False),
    ({"title": ""}, False),
    # What a scan or a scraper fills before identification does not count on its own.
    ({"code": "ABC-1"}, False),
    ({"rating100": 80}, False),
    ({"urls": ("https://example.com/x",)}, False),
    ({"groups": ("Group",)}, False),
    ({"director": "Someone"}, False),
    ({"organized": True}, False),
    ({"code": "ABC-1", "rating100": 80, "urls": ("u",), "groups": ("g",), "director": "d"}, False),
])
def test_what_counts_as_metadata(fields: dict[str, Any], identified: bool) -> None:
    assert bare(**fields).has_metadata is identified


#: An item Plex's own agent filled in, every managed field set.
FILLED = CurrentState(
    rating_key="5", title="Plex Title", title_sort="Plex Title", studio="Plex Studio", summary="Plex summary",
    tagline="Plex tagline", originally_available_at="2001-02-03", rating=7.0, genres=("Plex Genre",),
    actors=(Actor("Plex Actor"),), collections=("Plex Collection",),
)


def _clears(params: dict[str, Any]) -> list[str]:
    """The keys of an edit that would empty a field or remove a tag."""
    return sorted(k for k, v in params.items()
                  if (k.endswith(".value") and v in ("", None)) or k.endswith(".tag.tag-"))


@pytest.mark.parametrize("preserve", [False, True])
@pytest.mark.parametrize("scene", [
    bare(),
    bare(code="ABC-1", rating100=80, director="Someone"),
    bare(title=" ", details=" "),
], ids=["nothing", "scan-only-fields", "blank-text"])
def test_a_scene_without_metadata_plans_no_clearing_edit(scene: Scene, preserve: bool) -> None:
    settings = load_settings({}, warn=lambda message: None)
    plan = plan_edit(desired_state(scene, settings), FILLED, None, lock=False, preserve=preserve)
    assert _clears(dict(plan.params)) == []
    assert "title.value" not in plan.params


def test_the_gate_is_what_keeps_plex_values() -> None:
    """The same scene with one real value does clear the rest: Stash wins once identified."""
    settings = load_settings({}, warn=lambda message: None)
    plan = plan_edit(desired_state(bare(title="Identified"), settings), FILLED, None, lock=False, preserve=False)
    assert {"summary.value", "studio.value", "genre[].tag.tag-", "actor[].tag.tag-"} <= set(_clears(dict(plan.params)))
