"""A save in the emulated Stash runs the plugin's hook before the save is answered, as in
Stash: a sceneUpdate sent through stashapi reaches Plex through the plugin, with nobody
firing the hook by hand."""

from __future__ import annotations

from pathlib import Path

from emulators.stage import stage
from tests.e2e_worker_support import QUIET, audited, synced


def test_a_scene_saved_through_the_api_runs_its_hook_and_reaches_plex(tmp_path: Path) -> None:
    from stashapi.stashapp import StashInterface

    with stage(2, seed=5, work_dir=tmp_path, settings=QUIET, on_result=audited("stash edits e2e")) as st:
        runs = st.run_hooks_on_edits()
        stash_api = StashInterface({"Scheme": "http", "Host": "127.0.0.1", "Port": st.stash.port})
        scene_id = st.library.sorted_ids()[0]
        stash_api.update_scene({"id": scene_id, "title": "Saved In Stash"})
        assert [h.trigger for h in st.stash.hooks] == ["Scene.Update.Post"]
        (run,) = runs
        assert run.error is None, run.logs
        st.wait_for_worker()
        assert st.plex_item(scene_id).title == "Saved In Stash"
        assert synced(st, scene_id)
