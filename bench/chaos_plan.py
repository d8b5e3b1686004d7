"""The chaos soak's schedule: what happens when, from a seed. Pure.

A run is a list of timed actions. Everything random about a run is decided here, from
`random.Random(seed)`, so the same seed gives the same schedule; what the plugin does with
it still depends on how the machine schedules processes, which is the point of a soak.
Each kind of trouble is its own stream of events (saves, renames, deletions, tasks, Plex
faults, Stash restarts, kills), merged on one timeline.

The rules a schedule keeps, each one something a real library or server cannot do otherwise:

* a deleted scene is never saved again, and at least `BURST` scenes stay alive so the
  burst of hooks always finds distinct scenes;
* every switch that is turned on is turned off again before the end (Plex down and up, a
  token revoked and restored, slow answers and fast again, Stash down and up), and two
  windows of one switch never overlap;
* while Stash is down nobody saves or starts a task (Stash runs hooks and tasks itself):
  such actions move to the moment Stash is back;
* one burst of `BURST` hooks at once in every run, more in long runs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Hooks fired at once in the big burst: a bulk edit or a scan in Stash fires this many.
BURST = 200
TASK_MODES = ("all", "process_queue", "reconcile_all")
ENTITY_KINDS = ("performer", "studio", "tag")
#: Switches with an "on" and an "off" action: a window of trouble.
WINDOWS = {"plex_down": "plex_up", "revoke": "restore", "plex_slow": "plex_fast", "stash_down": "stash_up"}
#: The actions that are a fault (counted in the report).
FAULTS = (*WINDOWS, "plex_errors", "plex_429")
#: What needs Stash to be up (it saves, or Stash itself starts it); see `_past`.
NEEDS_STASH = ("save", "rename", "delete", "task")


@dataclass(frozen=True)
class Action:
    """One thing that happens `at` seconds into the run.

    `scenes`: the scenes saved or deleted; `entity`: (kind, id) renamed; `mode` and
    `cancel_after`: a task and when it is cancelled (None: left to finish); `n` and `value`:
    how many faulty answers and their status or Retry-After, or the added latency; `pick`: a
    number in [0, 1) the driver uses for its one choice at run time (which running process
    is killed, which fields a save changes).
    """

    at: float
    kind: str
    scenes: tuple[int, ...] = ()
    entity: tuple[str, int] | None = None
    mode: str | None = None
    cancel_after: float | None = None
    n: int = 0
    value: float = 0.0
    pick: float = 0.0


@dataclass(frozen=True)
class Rates:
    """Mean seconds between events of each stream."""

    save: float = 0.8
    rename: float = 4.0
    delete: float = 6.0
    task: float = 15.0
    plex_window: float = 12.0
    plex_answer: float = 6.0
    stash_restart: float = 40.0
    kill: float = 3.0
    #: Seconds between big bursts after the first (give or take a quarter).
    burst: float = 180.0


def plan(seed: int, seconds: float, scene_ids: Sequence[int], entities: Mapping[str, Sequence[int]],
         rates: Rates = Rates()) -> list[Action]:
    """The whole schedule of a run of `seconds`, sorted by time."""
    rng = random.Random(seed)
    actions = _windows(rng, seconds, rates)
    spans = list(zip(sorted(a.at for a in actions if a.kind == "stash_down"),
                     sorted(a.at for a in actions if a.kind == "stash_up"), strict=True))

    def times(mean_gap: float) -> list[float]:
        return [_past(spans, t) for t in _times(rng, seconds, mean_gap)]

    actions += _plex_answers(rng, seconds, rates)
    actions += [Action(t, "kill", pick=rng.random()) for t in _times(rng, seconds, rates.kill)]
    actions += _tasks(rng, seconds, times(rates.task), lambda t: _past(spans, t))
    actions += _renames(rng, times(rates.rename), entities)
    deaths = _deletions(rng, times(rates.delete), scene_ids)
    actions += deaths
    bursts = [round(rng.uniform(0.1, 0.5) * seconds, 3)]
    while bursts[-1] + 1.25 * rates.burst < seconds:
        bursts.append(round(bursts[-1] + rates.burst * rng.uniform(0.75, 1.25), 3))
    bursts = [_past(spans, t) for t in bursts]
    actions += _saves(rng, bursts, times(rates.save), scene_ids, {a.scenes[0]: a.at for a in deaths},
                      seconds)
    return sorted(actions, key=lambda a: a.at)


def counts(actions: Iterable[Action]) -> dict[str, int]:
    """How many actions of each kind, for the report."""
    out: dict[str, int] = {}
    for action in actions:
        out[action.kind] = out.get(action.kind, 0) + 1
    return out


def _times(rng: random.Random, seconds: float, mean_gap: float, start: float = 0.0) -> list[float]:
    """A Poisson stream: exponential gaps with this mean, within [start, seconds)."""
    out, t = [], start
    while True:
        t += rng.expovariate(1.0 / mean_gap)
        if t >= seconds:
            return out
        out.append(round(t, 3))


def _windows(rng: random.Random, seconds: float, rates: Rates) -> list[Action]:
    """Each switch's windows; every switch gets at least one, somewhere in the run."""
    taken: dict[str, list[tuple[float, float]]] = {kind: [] for kind in WINDOWS}
    spans = {"plex_down": (1.0, 6.0), "revoke": (2.0, 8.0), "plex_slow": (2.0, 6.0), "stash_down": (0.5, 3.0)}
    wanted = [(round(rng.uniform(0.05, 0.8) * seconds, 3), kind) for kind in WINDOWS]
    # A revoked token halts the plugin until the user runs a task, so it is the rarest.
    wanted += [(t, rng.choices(("plex_down", "plex_slow", "revoke"), weights=(9, 8, 3))[0])
               for t in _times(rng, seconds, rates.plex_window)]
    wanted += [(t, "stash_down") for t in _times(rng, seconds, rates.stash_restart)]
    out: list[Action] = []
    for t, kind in wanted:
        end = min(round(t + rng.uniform(*spans[kind]), 3), seconds)
        if any(t < other_end + 0.5 and other_start < end + 0.5 for other_start, other_end in taken[kind]):
            continue  # one window of a switch at a time
        taken[kind].append((t, end))
        out.append(Action(t, kind, value=round(rng.uniform(0.2, 1.0), 3) if kind == "plex_slow" else 0.0))
        out.append(Action(end, WINDOWS[kind]))
    return out


def _plex_answers(rng: random.Random, seconds: float, rates: Rates) -> list[Action]:
    """5xx bursts and 429s, the first of the run one of each. Each is a moment: the next
    few requests get it, and whatever no request took is gone a moment later (`plex_calm`),
    as a real server's trouble passes with time, not with the number of requests."""
    out = []
    for i, t in enumerate(_times(rng, seconds, rates.plex_answer)):
        if i == 0 or (i > 1 and rng.random() < 0.5):
            out.append(Action(t, "plex_errors", n=rng.randint(1, 6), value=float(rng.choice((500, 502, 503)))))
        else:
            out.append(Action(t, "plex_429", n=rng.randint(1, 4), value=float(rng.randint(1, 3))))
        out.append(Action(min(seconds, round(t + rng.uniform(0.5, 3.0), 3)), "plex_calm"))
    return out


def _tasks(rng: random.Random, seconds: float, times: list[float], past: Callable[[float], float]) -> list[Action]:
    """Each mode once and each mode cancelled once, somewhere in the run; then the stream."""
    firsts = [(mode, None) for mode in TASK_MODES] + [(mode, 1.0) for mode in TASK_MODES]
    out = []
    for mode, cancel in firsts:
        out.append(Action(past(round(rng.uniform(0.05, 0.8) * seconds, 3)), "task", mode=mode,
                          cancel_after=round(rng.uniform(0.2, 4.0), 3) if cancel else None))
    for t in times:
        after = round(rng.uniform(0.2, 4.0), 3) if rng.random() < 0.5 else None
        out.append(Action(t, "task", mode=rng.choice(TASK_MODES), cancel_after=after))
    return out


def _renames(rng: random.Random, times: list[float], entities: Mapping[str, Sequence[int]]) -> list[Action]:
    kinds = [k for k in ENTITY_KINDS if entities.get(k)]
    if not kinds:
        return []
    out = []
    for t in times:
        kind = rng.choice(kinds)
        out.append(Action(t, "rename", entity=(kind, rng.choice(list(entities[kind])))))
    return out


def _deletions(rng: random.Random, times: list[float], scene_ids: Sequence[int]) -> list[Action]:
    budget = max(0, min(len(scene_ids) // 10, len(scene_ids) - BURST))
    alive = list(scene_ids)
    out = []
    for t in times[:budget]:
        victim = alive.pop(rng.randrange(len(alive)))
        out.append(Action(t, "delete", scenes=(victim,)))
    return out


def _saves(rng: random.Random, bursts: list[float], times: list[float], scene_ids: Sequence[int],
           deleted_at: Mapping[int, float], seconds: float) -> list[Action]:
    def alive(t: float) -> list[int]:
        # A scene deleted at or before t is gone; one deleted just after may still be saved
        # (its deletion then lands on a save in flight, which is part of the chaos).
        return [sid for sid in scene_ids if deleted_at.get(sid, seconds + 1) > t]

    out = []
    for t in bursts:
        pool = alive(t)
        out.append(Action(t, "save", scenes=tuple(sorted(rng.sample(pool, min(BURST, len(pool))))),
                          pick=rng.random()))
    for t in times:
        size = rng.choice((1, 1, 1, 2, 3, 5)) if rng.random() < 0.9 else rng.randint(10, 40)
        pool = alive(t)
        out.append(Action(t, "save", scenes=tuple(sorted(rng.sample(pool, min(size, len(pool))))),
                          pick=rng.random()))
    return out


def _past(spans: Sequence[tuple[float, float]], t: float) -> float:
    """`t`, or the moment Stash is back if it is down at `t`."""
    for down, up in spans:
        if down <= t <= up:
            return round(up + 0.05, 3)
    return t
