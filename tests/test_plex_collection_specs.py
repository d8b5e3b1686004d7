"""plex.collection_specs: which collections a scene joins, by kind, prefix and toggle."""

from __future__ import annotations

from base.settings import load_settings
from plex.collection_specs import GROUP, NETWORK, STUDIO, collection_title, scene_collections
from plex.desired import desired_state
from stash.records import GroupLink, Scene, SceneFile, Studio

NETWORK_STUDIO = Studio("1", "Sub", image_url="http://stash/studio/1/image",
                        parents=(Studio("2", "Net"), Studio("3", "Mega Net", image_url="http://stash/studio/3/image")))
LINKS = (GroupLink("10", "Series A", 2, "About A", "http://stash/group/10/frontimage"),
         GroupLink("11", "Series B", None, None, None))


def settings(**raw: object):
    return load_settings(raw, warn=lambda message: None)


def scene(**fields: object) -> Scene:
    base: dict[str, object] = dict(id=7, title="T", files=(SceneFile("/a.mp4"),), studio=NETWORK_STUDIO,
                                   groups=("Series A", "Series B"), group_links=LINKS)
    base.update(fields)
    return Scene(**base)  # type: ignore[arg-type]


def test_defaults_studio_and_groups_not_networks() -> None:
    specs = scene_collections(scene(), settings())
    assert [(s.kind, s.source_id, s.title) for s in specs] == [
        (STUDIO, "1", "Sub"), (GROUP, "10", "Series A"), (GROUP, "11", "Series B")]
    group = specs[1]
    assert (group.summary, group.image_url, group.scene_index, group.ordered) == (
        "About A", "http://stash/group/10/frontimage", 2, True)
    assert specs[0].image_url == "http://stash/studio/1/image" and not specs[0].ordered
    assert desired_state(scene(), settings()).collections == ("Sub", "Series A", "Series B")


def test_networks_and_prefix() -> None:
    specs = scene_collections(scene(), settings(sync_network_collections=True, collection_prefix="Stash: "))
    assert [(s.kind, s.title) for s in specs] == [
        (STUDIO, "Stash: Sub"), (NETWORK, "Stash: Net"), (NETWORK, "Stash: Mega Net"),
        (GROUP, "Stash: Series A"), (GROUP, "Stash: Series B")]
    assert specs[2].image_url == "http://stash/studio/3/image"


def test_groups_off_and_collections_off() -> None:
    assert [s.kind for s in scene_collections(scene(), settings(sync_group_collections=False))] == [STUDIO]
    assert scene_collections(scene(), settings(sync_collection=False)) == ()
    assert desired_state(scene(), settings(sync_collection=False)).collections is None
    assert desired_state(scene(), settings(sync_master=False)).collections is None


def test_names_deduplicated_ignoring_case_and_blank_names_dropped() -> None:
    links = (GroupLink("12", "sub"), GroupLink("13", "  "))
    specs = scene_collections(scene(group_links=links), settings())
    assert [s.title for s in specs] == ["Sub"]
    assert collection_title("  a\nb ", "P ") == "P a b"
    assert collection_title("", "P ") == ""
