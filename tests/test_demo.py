"""The README's demo: it runs to the end, its table shows Stash's titles, and it prints no secret.

The demo is run as the README runs it (`python -m emulators.demo`, a subprocess), so the
test covers the whole path a new user takes. What the table must show is worked out here
from the generated library and the demo's own edit plan, not read back from the demo.
"""

from __future__ import annotations

import posixpath
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from emulators import demo
from emulators.stage import stage
from emulators.stash_library import generate_library
from tests.secret_audit import AUDIT

ROOT = Path(__file__).resolve().parent.parent
SCENES = 30
SEED = 3


def table_lines(output: str) -> dict[tuple[int, str], str]:
    """(scene id, "before"/"after"/"stash") -> that line of the before/after table."""
    lines: dict[tuple[int, str], str] = {}
    scene = 0
    _, _, rest = output.partition("\nPlex before and after")
    for line in rest.splitlines()[1:]:
        if not line.strip():
            break
        words = line.split()
        if words[0].isdigit() and len(words) > 1 and words[1] == "before":
            scene = int(words[0])
            lines[(scene, "before")] = line
        elif words[0] in ("after", "stash") and scene:
            lines[(scene, words[0])] = line
    return lines


@pytest.mark.slow
def test_demo_runs_clean_and_shows_stash_titles_in_plex() -> None:
    token = secrets.token_urlsafe(18)
    AUDIT.add_secret(token)
    proc = subprocess.run(
        [sys.executable, "-m", "emulators.demo", "--scenes", str(SCENES), "--seed", str(SEED), f"--token={token}"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    AUDIT.record("python -m emulators.demo", proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert token not in proc.stdout + proc.stderr
    for step in range(1, 8):
        assert f"\u25b6 {step}. " in proc.stdout
    assert f"Checked {SCENES} scenes in Plex against Stash: all match." in proc.stdout

    library = generate_library(SCENES, seed=SEED, stash_root="/data/stash")
    plan = demo.plan(library)
    changes = demo.edits(library, plan)
    rows = table_lines(proc.stdout)
    assert {sid for sid, _ in rows} == set(plan.shown)
    for sid in plan.shown:
        title = changes.get(sid, {}).get("title") or library.scenes[sid].title
        shown = demo.fit(" ".join(title.split()), demo.TITLE_WIDTH)
        assert shown in rows[(sid, "after")], (sid, rows[(sid, "after")])
        stem = posixpath.splitext(posixpath.basename(library.scenes[sid].files[0].path))[0]
        assert demo.fit(stem, demo.TITLE_WIDTH) in rows[(sid, "before")], (sid, rows[(sid, "before")])
        assert rows[(sid, "after")].rstrip().endswith("cover")
        assert rows[(sid, "before")].rstrip().endswith("frame")
    _, _, part = proc.stdout.partition("\nA Stash group as a Plex collection, before and after:\n")
    lines = part.splitlines()
    assert lines[0].startswith("  before ") and "no collection in Plex" in lines[0], part[:800]
    after = [line for line in lines if line.startswith("  after ")]
    assert "poster: group front image" in after[0], after
    assert after[1].split(":", 1)[1].strip() == after[2].split(":", 1)[1].strip(), after


def test_check_finds_every_scene_plex_has_not_been_told_about(tmp_path: Path) -> None:
    """The demo's final check can fail: bare Plex items (scanned, never synced) differ."""
    with stage(8, seed=SEED, work_dir=tmp_path) as st:
        problems = demo.mismatches(st)
        titled = [sid for sid in st.library.sorted_ids() if st.library.scenes[sid].title]
        for sid in titled:
            assert any(p.startswith(f"scene {sid}: title is ") for p in problems), problems
        assert all(any(p.startswith(f"scene {sid}: poster is 'frame'") for p in problems)
                   for sid in st.library.sorted_ids())
        st.plex.remove_item(st.plex_item(titled[0]).rating_key)
        assert f"scene {titled[0]}: no Plex item" in demo.mismatches(st)


def test_plan_picks_six_distinct_scenes_and_edits_five() -> None:
    library = generate_library(SCENES, seed=SEED, stash_root="/data/stash")
    plan = demo.plan(library)
    assert len(set(plan.shown)) == 6
    changes = demo.edits(library, plan)
    assert set(changes) == set(plan.shown) - {plan.untouched}
    assert all(changes[sid]["title"] != library.scenes[sid].title for sid in changes)
    with pytest.raises(ValueError):
        demo.plan(generate_library(5, seed=SEED))


@pytest.mark.parametrize("text, columns, expected", [
    ("abc", 5, "abc  "),
    ("abcdef", 4, "abc\u2026"),
    ("東京", 5, "東京 "),
    ("東京東京", 5, "東京\u2026"),
])
def test_fit_pads_and_cuts_by_terminal_columns(text: str, columns: int, expected: str) -> None:
    assert demo.fit(text, columns) == expected
    assert demo.width(demo.fit(text, columns)) == columns

