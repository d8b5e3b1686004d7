"""The emulated Stash's groups, through the real stashapi over loopback: the Group shape of
Stash's schema, findGroups' filter and paging, the group and scene mutations, the group
images, and the hooks each mutation fires with the context Stash gives a plugin."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from emulators.host import StashHost
from emulators.stash_library import StashLibrary, Studio, png_bytes
from emulators.stash_server import StashEmulator

T0 = 1_700_000_000.0


@pytest.fixture
def library() -> StashLibrary:
    lib = StashLibrary()
    lib.studios[1] = Studio(id=1, name="Parent Net")
    lib.studios[2] = Studio(id=2, name="Child", parent_id=1)
    series = lib.add_group("Series One", aliases="S1, First Series", studio_id=2, date="2021-03-04",
                           duration=5400, synopsis="The first.", urls=["https://example.com/s1"], now=T0)
    part = lib.add_group("Part Two", now=T0, front_image=png_bytes(7))
    lib.groups[series].sub_groups.append((part, "sequel"))
    lib.add_group("Other", studio_id=1, now=T0)
    for n in range(1, 5):
        lib.add_scene(files=[f"/data/stash/s{n}.mp4"], title=f"Scene {n}", now=T0,
                      groups=[(series, n)] if n <= 2 else [(part, None)] if n == 3 else [])
    return lib


@pytest.fixture
def stash(library: StashLibrary) -> Iterator[StashEmulator]:
    with StashEmulator(library, clock=lambda: T0 + 60) as server:
        yield server


def client(stash: StashEmulator) -> Any:
    from stashapi.stashapp import StashInterface

    return StashInterface({"Scheme": "http", "Host": "127.0.0.1", "Port": stash.port})


def errors(stash: StashEmulator, query: str, variables: dict[str, Any] | None = None) -> list[str]:
    """The resolver errors of one document sent raw (stashapi only logs their text)."""
    answer = requests.post(f"{stash.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=10)
    assert answer.status_code == 200
    return [e["message"] for e in answer.json().get("errors", [])]


UPDATE_GROUP = "mutation($i: GroupUpdateInput!) { groupUpdate(input: $i) { id } }"
CREATE_GROUP = "mutation($i: GroupCreateInput!) { groupCreate(input: $i) { id } }"


def test_find_group_answers_stashs_group_shape(stash: StashEmulator) -> None:
    group = client(stash).find_group(1)
    assert (group["name"], group["aliases"], group["duration"], group["date"]) == (
        "Series One", "S1, First Series", 5400, "2021-03-04")
    assert group["studio"] == {"id": "2"} and group["urls"] == ["https://example.com/s1"]
    assert group["sub_groups"] == [{"group": {"id": "2"}, "description": "sequel"}]
    assert group["containing_groups"] == []
    assert group["scene_count"] == 2 and group["sub_group_count"] == 1
    assert group["front_image_path"].endswith(f"/group/1/frontimage?t={int(T0)}&default=true")
    assert group["back_image_path"] is None
    assert group["created_at"] == "2023-11-14T22:13:20Z"
    part = client(stash).find_group(2)
    assert part["containing_groups"] == [{"group": {"id": "1"}, "description": "sequel"}]
    assert part["front_image_path"].endswith(f"/group/2/frontimage?t={int(T0)}")
    assert client(stash).find_group(99) is None


def test_scene_count_with_depth_counts_sub_groups_once(stash: StashEmulator) -> None:
    answer = client(stash).call_GQL("query { findGroup(id: 1) { a: scene_count b: scene_count(depth: -1) } }")
    assert answer["findGroup"] == {"a": 2, "b": 3}


def test_find_groups_filters_searches_and_pages(stash: StashEmulator) -> None:
    stash_api = client(stash)
    assert [g["name"] for g in stash_api.find_groups(fragment="name")] == ["Other", "Part Two", "Series One"]
    named = stash_api.find_groups(f={"name": {"value": "two", "modifier": "INCLUDES"}}, fragment="id")
    assert named == [{"id": "2"}]
    under_parent = stash_api.find_groups(
        f={"studios": {"value": ["1"], "modifier": "INCLUDES", "depth": -1}}, fragment="name")
    assert sorted(g["name"] for g in under_parent) == ["Other", "Series One"]
    assert [g["id"] for g in stash_api.find_groups(q="First Series", fragment="id")] == ["1"]
    count, page = stash_api.find_groups(filter={"per_page": 2, "page": 2, "sort": "name"}, fragment="name",
                                        get_count=True)
    assert count == 3 and page == [{"name": "Series One"}]
    assert errors(stash, '{ findGroups(filter: {sort: "nonsense"}) { count } }') == ["invalid sort: nonsense"]


def test_scene_groups_carry_the_scene_index(stash: StashEmulator) -> None:
    scene = client(stash).find_scene(2, fragment="id groups { group { id name } scene_index }")
    assert scene["groups"] == [{"group": {"id": "1", "name": "Series One"}, "scene_index": 2}]
    in_group = client(stash).find_scenes(f={"groups": {"value": ["2"], "modifier": "INCLUDES"}}, fragment="id")
    assert in_group == [{"id": "3"}]
    with_subs = client(stash).find_scenes(f={"groups": {"value": ["1"], "modifier": "INCLUDES", "depth": -1}},
                                          fragment="id")
    assert with_subs == [{"id": "1"}, {"id": "2"}, {"id": "3"}]


def test_group_mutations_and_their_hooks(stash: StashEmulator, library: StashLibrary) -> None:
    stash_api = client(stash)
    image = png_bytes(3)
    created = stash_api.create_group({"name": "New", "studio_id": "1", "containing_groups": [{"group_id": "1"}],
                                      "front_image": "data:image/png;base64," + base64.b64encode(image).decode()})
    new_id = int(created["id"])
    assert library.groups[new_id].front_image == image
    assert (new_id, None) in library.groups[1].sub_groups
    assert requests.get(f"{stash.url}/group/{new_id}/frontimage", timeout=10).content == image
    create_hooks = [(h.trigger, h.id) for h in stash.hooks]
    assert create_hooks == [("Group.Create.Post", new_id), ("Movie.Create.Post", new_id)]
    first = stash.hooks[0].context()
    assert first["input"]["name"] == "New" and first["input"]["synopsis"] is None and "inputFields" not in first

    updated = stash_api.update_group({"id": str(new_id), "synopsis": "Now with text", "studio_id": None})
    assert updated["synopsis"] == "Now with text" and updated["studio"] is None
    assert library.groups[new_id].updated_at == T0 + 60
    update = stash.hooks[2].context()
    assert (update["type"], update["id"], sorted(update["inputFields"])) == (
        "Group.Update.Post", new_id, ["id", "studio_id", "synopsis"])
    assert stash.hooks[3].trigger == "Movie.Update.Post"

    destroyed = stash_api.call_GQL("mutation($i: GroupDestroyInput!) { groupDestroy(input: $i) }",
                                   {"i": {"id": str(new_id)}})
    assert destroyed == {"groupDestroy": True}
    assert new_id not in library.groups and all(g != new_id for g, _ in library.groups[1].sub_groups)
    assert [h.trigger for h in stash.hooks[4:]] == ["Group.Destroy.Post", "Movie.Destroy.Post"]


def test_stashapis_destroy_group_selects_fields_of_a_boolean(stash: StashEmulator) -> None:
    """groupDestroy answers Boolean! in Stash's schema; stashapi 0.2.59's destroy_group asks
    for `...Group` of it, which real Stash refuses at validation, so it cannot be used."""
    with pytest.raises(Exception, match="422 Unprocessable Entity"):
        client(stash).destroy_group(2)
    assert 2 in stash.library.groups and stash.hooks == []


def test_a_bad_group_mutation_changes_nothing_and_fires_nothing(stash: StashEmulator, library: StashLibrary) -> None:
    assert errors(stash, UPDATE_GROUP, {"i": {"id": "1", "name": "Renamed", "sub_groups": [{"group_id": "99"}]}}) == [
        "group with id 99 not found"]
    assert errors(stash, CREATE_GROUP, {"i": {"name": "  "}}) == ["name must not be blank"]
    (message,) = errors(stash, CREATE_GROUP, {"i": {"name": "X", "front_image": "https://example.com/a.png"}})
    assert "image URLs are not fetched" in message
    assert errors(stash, UPDATE_GROUP, {"i": {"id": "abc", "name": "Y"}}) == [
        'strconv.Atoi: parsing "abc": invalid syntax']
    assert client(stash).update_group({"id": "1", "studio_id": "77"}) is None  # stashapi only logs it
    assert library.groups[1].name == "Series One" and len(library.groups) == 3 and stash.hooks == []


def test_scene_update_sets_groups_and_fires_the_scene_hook(stash: StashEmulator, library: StashLibrary) -> None:
    stash_api = client(stash)
    stash_api.update_scene({"id": "4", "groups": [{"group_id": "3", "scene_index": 7}, {"group_id": "1"}]})
    assert library.scenes[4].groups == [(3, 7), (1, None)]
    assert library.scenes[4].updated_at == T0 + 60
    (hook,) = stash.hooks
    context = hook.context()
    assert (context["type"], context["id"], context["inputFields"]) == ("Scene.Update.Post", 4, ["id", "groups"])
    assert context["input"]["title"] is None and context["input"]["groups"][0] == {"group_id": "3", "scene_index": 7}
    assert client(stash).find_group(3)["scene_count"] == 1
    assert errors(stash, "mutation { sceneUpdate(input: {id: 4, groups: [{group_id: 50}]}) { id } }") == [
        "group with id 50 not found"]
    assert library.scenes[4].groups == [(3, 7), (1, None)]


def test_destroying_a_group_unlinks_its_scenes(stash: StashEmulator, library: StashLibrary) -> None:
    client(stash).call_GQL("mutation { groupDestroy(input: {id: 1}) }")
    assert library.scenes[1].groups == [] and library.scenes[3].groups == [(2, None)]
    assert client(stash).find_group(2)["containing_groups"] == []


def test_a_plugin_host_gets_the_hook_context_stash_sends(stash: StashEmulator, tmp_path: Path) -> None:
    plugin = tmp_path / "plugins" / "probe"
    plugin.mkdir(parents=True)
    (plugin / "probe.py").write_text(
        "import json, sys\nopen(sys.argv[1], 'a').write(json.dumps(json.load(sys.stdin)['args']) + '\\n')\n")
    out = tmp_path / "seen.jsonl"
    (plugin / "probe.yml").write_text(
        f"name: probe\nexec: [python, '{{pluginDir}}/probe.py', '{out}']\ninterface: raw\n"
        "hooks:\n  - name: groups\n    triggeredBy: [Group.Update.Post]\n")
    host = StashHost(plugin_dir=plugin, connection=stash.connection(cookie=False), stash_dir=tmp_path,
                     python=sys.executable)
    stash.hook_sink = lambda call: host.run_hook(call.trigger, call.id, call.input, call.input_fields)
    client(stash).update_group({"id": "2", "name": "Part 2"})
    (seen,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert seen["hookContext"]["type"] == "Group.Update.Post" and seen["hookContext"]["id"] == 2
    assert sorted(seen["hookContext"]["inputFields"]) == ["id", "name"]
    assert seen["hookContext"]["input"]["name"] == "Part 2"


def test_generated_libraries_have_awkward_groups() -> None:
    from emulators.stash_library import generate_library

    lib = generate_library(2000, seed=3)
    with StashEmulator(lib) as server:
        groups = client(server).find_groups(fragment="id aliases front_image_path sub_groups { group { id } }")
    assert len(groups) == 4
    assert any(g["aliases"] for g in groups) and any(g["aliases"] is None for g in groups)
    assert {g["front_image_path"].endswith("&default=true") for g in groups} == {True, False}
    assert [g["sub_groups"] for g in groups if g["id"] == "3"] == [[{"group": {"id": "4"}}]]
    assert generate_library(2000, seed=3).scenes[77].title == lib.scenes[77].title  # still deterministic
