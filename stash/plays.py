"""Stash's play history and resume points: the only things the watch-history import writes.

Reads a batch of scenes' activity in one request; adds a scene's plays in one
`sceneAddPlay` (it takes a list of times); sets a resume point with `sceneSaveActivity`
(resume only: the play duration is Stash's own player's to count). Nothing here can touch
a scene's metadata. Times go out as RFC 3339 in UTC; times come back in Stash's zone and
are turned into epoch seconds.

The read documents live in `stash.queries`; the writes are built here, because one request
carries many scenes (one aliased mutation each), and a test checks them against Stash's
real schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stash import queries
from stash.times import parse_stamp, stash_stamp

#: Scenes per activity read: one request, a bounded answer.
ACTIVITY_BATCH = 200


class GraphQL(Protocol):
    def gql(self, document: str, variables: dict | None = None) -> dict: ...


@dataclass(frozen=True)
class SceneActivity:
    """What Stash knows of a scene's viewing: play times (epoch s), resume point, length."""

    scene_id: int
    plays: tuple[float, ...]
    resume_time: float
    last_played_at: float | None
    duration: float


def epoch(text: str) -> float:
    """Epoch seconds of a Time Stash served; a text that is not one is Stash's bug, said loudly."""
    seconds = parse_stamp(text)
    if seconds is None:
        raise ValueError(f"not a Stash time: {text!r}")
    return seconds


def activities(stash: GraphQL, scene_ids: Iterable[int]) -> dict[int, SceneActivity]:
    """Activity of every scene that still exists, by id; a deleted scene is simply absent."""
    ids = sorted(set(scene_ids))
    out: dict[int, SceneActivity] = {}
    for start in range(0, len(ids), ACTIVITY_BATCH):
        chunk = ids[start:start + ACTIVITY_BATCH]
        data = stash.gql(queries.SCENE_ACTIVITY, {"ids": [str(i) for i in chunk],
                                                  "filter": {"per_page": len(chunk), "page": 1}})
        for raw in data["findScenes"]["scenes"]:
            files = raw.get("files") or ()
            out[int(raw["id"])] = SceneActivity(
                scene_id=int(raw["id"]),
                plays=tuple(epoch(t) for t in raw.get("play_history") or ()),
                resume_time=float(raw.get("resume_time") or 0.0),
                last_played_at=epoch(raw["last_played_at"]) if raw.get("last_played_at") else None,
                duration=float(files[0].get("duration") or 0.0) if files else 0.0,
            )
    return out


def scene_by_path(stash: GraphQL, path: str) -> int | None:
    """The one scene with a file at exactly `path`, or None (none, or several: no guessing)."""
    data = stash.gql(queries.SCENES_BY_PATH, {"scene_filter": {"path": {"value": path, "modifier": "EQUALS"}},
                                              "filter": {"per_page": 2, "page": 1}})
    scenes = data["findScenes"]["scenes"]
    return int(scenes[0]["id"]) if len(scenes) == 1 else None




#: Mutations per request when several scenes are written at once (GraphQL aliases).
WRITE_BATCH = 100


def _aliased(name: str, field: str, calls: list[dict[str, Any]]) -> str:
    """One mutation document running `field` once per call, each under its own alias.

    Stash runs a document's mutations one after another, each in its own transaction, so
    a batch costs one round trip and a failure leaves the calls before it done: safe for
    the import, which re-reads Stash before it sends anything again. Arguments are literals
    (ids, times and seconds we format ourselves, written as JSON, which is valid GraphQL
    for them): a hundred variables cost a GraphQL server more to validate than the writes.
    """
    tail = " { count }" if field == "sceneAddPlay" else ""
    selections = [f"p{index}: {field}({', '.join(f'{arg}: {json.dumps(value)}' for arg, value in call.items())}){tail}"
                  for index, call in enumerate(calls)]
    return f"mutation {name} {{ {' '.join(selections)} }}"


def add_plays_many(stash: GraphQL, plays: dict[int, Sequence[float]]) -> int:
    """Add each scene's plays, `WRITE_BATCH` scenes per request; returns requests sent."""
    calls = [{"id": str(scene_id), "times": [stash_stamp(t) for t in times]}
             for scene_id, times in sorted(plays.items()) if times]
    return _send(stash, "S2PAddPlays", "sceneAddPlay", calls)


def save_resumes(stash: GraphQL, resumes: dict[int, float]) -> int:
    """Set each scene's resume point, `WRITE_BATCH` per request; returns requests sent."""
    calls = [{"id": str(scene_id), "resume_time": float(seconds)} for scene_id, seconds in sorted(resumes.items())]
    return _send(stash, "S2PSaveResumes", "sceneSaveActivity", calls)


def _send(stash: GraphQL, name: str, field: str, calls: list[dict[str, Any]]) -> int:
    sent = 0
    for start in range(0, len(calls), WRITE_BATCH):
        stash.gql(_aliased(name, field, calls[start:start + WRITE_BATCH]))
        sent += 1
    return sent
