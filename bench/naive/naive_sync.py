"""A naive synchronous Sync All: the baseline `bench/bench_sync_all.py` measures Stash2Plex against.

What a careful first plugin would do with the two client libraries and nothing else: page the
scenes from Stash with stashapi and, for each scene of the page, look its Plex item up by file
(`/all?type=1&file=<name>`, in NFC or NFD, then the exact path after the path map), send one edit with every
field, download the cover from Stash and upload it as the poster. One scene after another,
each request waiting for the one before. No queue, no ledger, no diff, no retry: a scene that
fails is logged and skipped. It is a yardstick, not a product; it is not slowed on purpose.

Stash runs it as any raw plugin (`NaiveSync.yml`): the stdin JSON carries the server
connection; the settings (`plex_url`, `plex_token`, `path_map` as `stash prefix=>plex
prefix`) are the plugin's own, saved in Stash.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from typing import Any
from urllib.parse import quote

PLUGIN_ID = "NaiveSync"
PAGE = 200
FIELDS = """
    id title code details date rating100
    files { path }
    paths { screenshot }
    studio { name }
    performers { name image_path }
    tags { name }
"""


def full_date(value: str | None) -> str | None:
    """Stash's `YYYY` and `YYYY-MM` completed to the first day, which Plex requires."""
    if not value:
        return None
    parts = value.split("-")
    return "-".join(parts + ["01"] * (3 - len(parts)))


def edit_params(scene: dict[str, Any]) -> dict[str, Any]:
    """Every field of the scene as one Plex edit, each locked, as plexapi's edit helpers do."""
    params: dict[str, Any] = {}

    def field(name: str, value: Any) -> None:
        params[f"{name}.value"] = value
        params[f"{name}.locked"] = 1

    def tags(kind: str, names: list[str], thumbs: list[str | None] | None = None) -> None:
        for i, name in enumerate(names):
            params[f"{kind}[{i}].tag.tag"] = name
            if thumbs and thumbs[i]:
                params[f"{kind}[{i}].tag.thumb"] = thumbs[i]
        params[f"{kind}.locked"] = 1

    if scene.get("title"):
        field("title", scene["title"])
        field("titleSort", scene["title"])
    field("summary", scene.get("details") or "")
    field("tagline", scene.get("code") or "")
    studio = (scene.get("studio") or {}).get("name") or ""
    field("studio", studio)
    date = full_date(scene.get("date"))
    if date:
        field("originallyAvailableAt", date)
    if scene.get("rating100"):
        field("userRating", scene["rating100"] / 10)
    tags("genre", list(dict.fromkeys(t["name"] for t in scene.get("tags") or [])))
    performers = list({p["name"]: p for p in scene.get("performers") or []}.values())
    tags("actor", [p["name"] for p in performers], [p.get("image_path") for p in performers])
    tags("collection", [studio] if studio else [])
    return params


class NaiveSync:
    def __init__(self, stash: Any, plex: Any, path_map: str) -> None:
        self.stash = stash
        self.plex = plex
        self.stash_root, _, self.plex_root = path_map.partition("=>")
        self.sections = [s for s in plex.library.sections() if s.type == "movie"]
        self.forms = ["NFC", "NFD"]

    def plex_path(self, path: str) -> str:
        if self.stash_root and path.startswith(self.stash_root):
            return self.plex_root + path[len(self.stash_root):]
        return path

    def find_item(self, path: str) -> Any:
        """Plex may hold file names in NFD (macOS, SMB shares) and `file=` compares code
        points, so a name is asked in the form that last found one first, then the other."""
        name = path.rsplit("/", 1)[-1]
        wanted = unicodedata.normalize("NFC", path)
        for form in list(self.forms):
            asked = unicodedata.normalize(form, name)
            for section in self.sections:
                for item in self.plex.fetchItems(f"/library/sections/{section.key}/all?type=1&file={quote(asked)}"):
                    if wanted in (unicodedata.normalize("NFC", f) for f in item.locations):
                        self.forms.sort(key=lambda f: f != form)
                        return item
            if unicodedata.normalize("NFC", name) == unicodedata.normalize("NFD", name):
                break  # plain ASCII: the other form is the same question
        return None

    def sync(self, scene: dict[str, Any]) -> bool:
        """True when the scene reached Plex; False when Plex has no item for its first file."""
        files = scene.get("files") or []
        item = self.find_item(self.plex_path(files[0]["path"])) if files else None
        if item is None:
            return False
        item.edit(**edit_params(scene))
        cover = (scene.get("paths") or {}).get("screenshot")
        if cover:
            answer = self.stash.s.get(cover, timeout=30)
            if answer.ok and answer.content:
                item.uploadPoster(filepath=answer.content)
        return True


def main() -> None:
    import stashapi.log as log
    from plexapi.server import PlexServer
    from stashapi.stashapp import StashInterface

    payload = json.loads(sys.stdin.read())
    stash = StashInterface(payload["server_connection"])
    config = stash.find_plugin_config(PLUGIN_ID) or {}
    naive = NaiveSync(stash, PlexServer(config["plex_url"], config["plex_token"]), config.get("path_map", ""))
    counts = {"synced": 0, "not_in_plex": 0, "failed": 0}
    page, done = 1, 0
    while True:
        total, scenes = stash.find_scenes(f={}, filter={"page": page, "per_page": PAGE, "sort": "id",
                                                         "direction": "ASC"}, fragment=FIELDS, get_count=True)
        for scene in scenes:
            try:
                counts["synced" if naive.sync(scene) else "not_in_plex"] += 1
            except Exception as exc:  # a baseline skips what fails and goes on
                counts["failed"] += 1
                log.error(f"scene {scene['id']}: {exc}")
        done += len(scenes)
        log.progress(done / total if total else 1.0)
        if not scenes or done >= total:
            break
        page += 1
    log.info(f"NaiveSync: {counts}")
    print(json.dumps({"output": counts}))


if __name__ == "__main__":
    main()
