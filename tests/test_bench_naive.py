"""The baseline `bench_sync_all.py` compares against is a real sync, not a stub: run through
the Stash host as Stash runs a plugin, it gives every scanned scene's Plex item the scene's
metadata and cover, with one edit and one upload per scene, and skips what Plex lacks."""

from __future__ import annotations

from bench.bench_sync_all import naive_host
from emulators.stage import stage
from emulators.stash_library import png_bytes


def test_naive_baseline_syncs_a_library_through_the_host() -> None:
    with stage(12, seed=3, scanned=False) as st:
        ids = st.library.sorted_ids()
        st.scan_into_plex(ids[:-2])  # the last two files are not in Plex
        result = naive_host(st).run_task("all")
        assert result.error is None, result.stderr
        assert result.output == {"synced": 10, "not_in_plex": 2, "failed": 0}
        assert result.progress and result.progress[-1] == 1.0
        lib = st.library
        for sid in ids[:-2]:
            scene, item = lib.scenes[sid], st.plex_item(sid)
            studio = lib.studios[scene.studio_id].name if scene.studio_id is not None else None
            if scene.title:
                assert item.title == scene.title
            assert item.fields.get("summary") == (scene.details or None)
            assert item.fields.get("studio") == studio
            assert item.tag_names("genre") == [lib.tags[t].name for t in scene.tag_ids]
            assert sorted(item.roles()) == sorted({lib.performers[p].name for p in scene.performer_ids})
            assert item.tag_names("collection") == ([studio] if studio else [])
            if scene.date:
                assert str(item.fields["originallyAvailableAt"]).startswith(scene.date)
            assert item.poster is not None and item.poster.data == (scene.cover or png_bytes(sid))
        for sid in ids[-2:]:
            assert st.plex_item(sid) is None
        assert st.plex.count("PUT") == 10 and st.plex.count("POST") == 10
