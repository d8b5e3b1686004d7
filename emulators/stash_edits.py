"""What Stash's group and scene mutations do to its data, apart from GraphQL.

Stash applies an update input as a changeset: a key the client sent is written (a null
clears the value), a key it left out is left alone, and the keys sent become the hook's
`inputFields`. Ids arrive as strings and go through strconv.Atoi; an id that names nothing
fails the mutation before anything is written, as the foreign keys would in Stash's single
transaction. Images are "a URL or a base64 encoded data URL"; the emulator decodes data URLs
and raw base64 and does not fetch URLs (a mutation sending one is refused here, saying so).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from emulators.stash_library import StashLibrary

# Input keys written as sent onto the model attribute of the same name.
_GROUP_SCALARS = ("name", "aliases", "duration", "date", "rating100", "director", "synopsis")
_SCENE_SCALARS = ("title", "code", "details", "director", "date", "rating100")


class EditRefused(Exception):
    """A mutation Stash answers with an error; nothing has been changed."""


def atoi(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EditRefused(f'strconv.Atoi: parsing "{value}": invalid syntax') from None


def image_bytes(value: str | None) -> bytes | None:
    """A data URL or bare base64 as Stash's ProcessImageInput reads it; None clears."""
    if value is None:
        return None
    if value.startswith(("http://", "https://")):
        raise EditRefused("emulator: image URLs are not fetched; send a base64 data URL")
    payload = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise EditRefused("error processing image: invalid base64 data") from None


def _existing(table: Mapping[int, Any], raw: Any, what: str) -> int:
    key = atoi(raw)
    if key not in table:
        raise EditRefused(f"{what} with id {key} not found")
    return key


def _shared_changes(lib: StashLibrary, values: Mapping[str, Any], scalars: tuple[str, ...]) -> dict[str, Any]:
    """The fields scenes and groups both have: text as sent, urls, studio and tags checked."""
    changes: dict[str, Any] = {k: values[k] for k in scalars if k in values}
    if "urls" in values:
        changes["urls"] = list(values["urls"] or [])
    if "studio_id" in values:
        changes["studio_id"] = (None if values["studio_id"] is None
                                else _existing(lib.studios, values["studio_id"], "studio"))
    if "tag_ids" in values:
        changes["tag_ids"] = [_existing(lib.tags, t, "tag") for t in values["tag_ids"] or []]
    return changes


def _group_changes(lib: StashLibrary, own_id: int | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """Model fields from a group input's sent keys, every id checked first."""
    changes = _shared_changes(lib, values, _GROUP_SCALARS)
    if "name" in changes and not (changes["name"] or "").strip():
        raise EditRefused("name must not be blank")
    for key in ("containing_groups", "sub_groups"):
        if key in values:
            links = [(_existing(lib.groups, d["group_id"], "group"), d.get("description"))
                     for d in values[key] or []]
            if own_id is not None and any(g == own_id for g, _ in links):
                raise EditRefused("a group cannot contain itself")
            changes[key] = links
    for key, attr in (("front_image", "front_image"), ("back_image", "back_image")):
        if key in values:
            changes[attr] = image_bytes(values[key])
    return changes


def _apply_group(lib: StashLibrary, group_id: int, changes: dict[str, Any], now: float) -> None:
    containing = changes.pop("containing_groups", None)
    lib.update_group(group_id, now=now, **changes)
    if containing is not None:
        for other in lib.groups.values():
            if other.id != group_id:
                other.sub_groups = [(g, d) for g, d in other.sub_groups if g != group_id]
        for parent, description in containing:
            lib.groups[parent].sub_groups.append((group_id, description))


def create_group(lib: StashLibrary, values: Mapping[str, Any], now: float) -> int:
    changes = _group_changes(lib, None, values)
    group_id = lib.add_group(changes.pop("name"), now=now)
    _apply_group(lib, group_id, changes, now)
    return group_id


def update_group(lib: StashLibrary, values: Mapping[str, Any], now: float) -> int:
    group_id = _existing(lib.groups, values["id"], "group")
    changes = _group_changes(lib, group_id, {k: v for k, v in values.items() if k != "id"})
    _apply_group(lib, group_id, changes, now)
    return group_id


def destroy_group(lib: StashLibrary, values: Mapping[str, Any]) -> int:
    group_id = _existing(lib.groups, values["id"], "group")
    lib.remove_group(group_id)
    return group_id


def update_scene(lib: StashLibrary, values: Mapping[str, Any], now: float) -> int:
    """sceneUpdate for the fields the emulator declares; `groups` replaces the scene's list."""
    scene_id = _existing(lib.scenes, values["id"], "scene")
    changes = _shared_changes(lib, values, _SCENE_SCALARS)
    if "organized" in values:
        changes["organized"] = bool(values["organized"])
    if "performer_ids" in values:
        changes["performer_ids"] = [_existing(lib.performers, p, "performer") for p in values["performer_ids"] or []]
    if "groups" in values:
        changes["groups"] = [(_existing(lib.groups, g["group_id"], "group"), g.get("scene_index"))
                             for g in values["groups"] or []]
    lib.update_scene(scene_id, now=now, **changes)
    return scene_id
