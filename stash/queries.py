"""Every GraphQL document the plugin sends to Stash.

They live here, as module-level constants, so one conformance test can validate each of
them against Stash's real schema (tests/test_stash_conformance.py). Field names follow
Stash v0.27+ (`groups`, `urls`, `rating100`, `files`).
"""

from __future__ import annotations

#: Parent studios read with every scene (a network of a network of a network); deeper
#: chains are cut there, as GraphQL has no recursive selection.
NETWORK_DEPTH = 3
_STUDIO = "id name image_path"


def _studio_chain(depth: int) -> str:
    """`parent_studio { ... }` nested `depth` levels deep."""
    return f" parent_studio {{ {_STUDIO}{_studio_chain(depth - 1)} }}" if depth else ""


#: What a scene shows of other objects: a rename of one of them changes what a sync writes
#: without changing the scene's own `updated_at`.
RELATED = ("studio", "performers", "tags", "groups")
_RELATED_FIELDS = f"""
    studio {{ {_STUDIO}{_studio_chain(NETWORK_DEPTH)} }}
    performers {{ id name image_path }}
    tags {{ id name }}
    groups {{ scene_index group {{ id name synopsis front_image_path }} }}
"""

SCENE_FIELDS = f"""
    id title code details director date rating100 organized urls created_at updated_at
    files {{ path size duration }}
    paths {{ screenshot }}{_RELATED_FIELDS}"""

VERSION = "query S2PVersion { version { version } }"

PLUGIN_CONFIG = """
query S2PPluginConfig($include: [ID!]) {
  configuration { plugins(include: $include) }
}
"""

FIND_SCENE = f"""
query S2PFindScene($id: ID!) {{
  findScene(id: $id) {{ {SCENE_FIELDS} }}
}}
"""

FIND_SCENES = f"""
query S2PFindScenes($filter: FindFilterType, $scene_filter: SceneFilterType) {{
  findScenes(filter: $filter, scene_filter: $scene_filter) {{
    count
    scenes {{ {SCENE_FIELDS} }}
  }}
}}
"""

# The drain's batch: `ids` (Stash v0.25+; older Stash took only the Int list `scene_ids`,
# deprecated since) with `per_page` covering every id, since the default page is 25.
SCENES_BY_ID = f"""
query S2PScenesById($ids: [ID!], $filter: FindFilterType) {{
  findScenes(ids: $ids, filter: $filter) {{
    scenes {{ {SCENE_FIELDS} }}
  }}
}}
"""

SCENE_STAMPS = f"""
query S2PSceneStamps($ids: [ID!], $filter: FindFilterType) {{
  findScenes(ids: $ids, filter: $filter) {{ scenes {{ id updated_at {_RELATED_FIELDS} }} }}
}}
"""

COUNT_SCENES = """
query S2PCountScenes($filter: FindFilterType, $scene_filter: SceneFilterType) {
  findScenes(filter: $filter, scene_filter: $scene_filter) { count }
}
"""

# --- watch history import: plays and resume points only, never metadata -------------------

SCENE_ACTIVITY = """
query S2PSceneActivity($ids: [ID!], $filter: FindFilterType) {
  findScenes(ids: $ids, filter: $filter) {
    scenes { id play_history resume_time last_played_at files { duration } }
  }
}
"""

SCENES_BY_PATH = """
query S2PScenesByPath($scene_filter: SceneFilterType, $filter: FindFilterType) {
  findScenes(scene_filter: $scene_filter, filter: $filter) { scenes { id } }
}
"""
