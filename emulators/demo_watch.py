"""The demo's watch-history step: what was watched in Plex shows up in Stash, exactly once.

Someone watches two scenes in Plex (one twice, to the end) and stops a third part-way (40% in); the
plugin's "Import Plex Watch History" task copies the plays (at their real times) and the
resume point into Stash; a second run adds nothing. The scenes' play count, last-played
time and resume point are printed before and after, and the step fails if Stash does not
end up holding exactly what Plex recorded.
"""

from __future__ import annotations

import time
from typing import Any

from emulators.stage import Stage

HOUR = 3600


def stop_at(st: Stage, scene_id: int) -> int:
    """Where the part-way viewer stopped, in seconds: 40% in."""
    return int(st.library.scenes[scene_id].files[0].duration * 0.4)


def watch_in_plex(st: Stage, scenes: tuple[int, int, int], now: float) -> dict[int, list[int]]:
    """Plays and a stop part-way in Plex; returns the play times Stash must end up with."""
    twice, once, partial = scenes
    plays = {twice: [int(now - 50 * HOUR), int(now - 26 * HOUR)], once: [int(now - 3 * HOUR)], partial: []}
    for scene_id, times in plays.items():
        for when in times:
            st.plex.play(st.plex_item(scene_id).rating_key, when)
    st.plex.progress(st.plex_item(partial).rating_key, stop_at(st, partial) * 1000, int(now - HOUR))
    return plays


def activity_line(st: Stage, scene_id: int) -> str:
    scene = st.library.scenes[scene_id]
    last = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(scene.play_history[-1])) if scene.play_history else "never"
    return (f"scene {scene_id:>4}: play count {scene.play_count}, last played {last}, "
            f"resume at {scene.resume_time / 60:.0f} min")


def run_watch_step(demo: Any, st: Stage, scenes: tuple[int, int, int]) -> None:
    """The step's body; `demo` is the running `emulators.demo.Demo`."""
    st.configure(import_watch_history=True)
    expected = watch_in_plex(st, scenes, time.time())
    demo.say(f"  watched in Plex: scene {scenes[0]} twice, scene {scenes[1]} once, "
             f"scene {scenes[2]} stopped at {stop_at(st, scenes[2]) / 60:.0f} min")
    for sid in scenes:
        demo.say(f"    before  {activity_line(st, sid)}")
    first = (demo.task("import_watch_history").get("watch_history") or {})
    second = (demo.task("import_watch_history").get("watch_history") or {})
    for sid in scenes:
        demo.say(f"    after   {activity_line(st, sid)}")
    demo.say(f"  first run added {first.get('added')} plays; the second added {second.get('added')}")
    for sid, times in expected.items():
        if [int(t) for t in st.library.scenes[sid].play_history] != times:
            demo.fail(f"scene {sid}: Stash has plays {st.library.scenes[sid].play_history}, Plex recorded {times}")
    if st.library.scenes[scenes[2]].resume_time != stop_at(st, scenes[2]):
        demo.fail(f"scene {scenes[2]}: resume point {st.library.scenes[scenes[2]].resume_time} s, "
                  f"expected {stop_at(st, scenes[2])} s")
    if second.get("added") != 0:
        demo.fail(f"the second run added {second.get('added')} plays")
