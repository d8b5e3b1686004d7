"""Which images a sync uploads: the rule that keeps an unchanged cover from costing a download
or an upload. Pure but for `fetch`, the injected download from Stash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from plex.desired import DesiredState
from plex.records import LedgerEntry

#: Downloads an image from Stash; None when Stash has no such image (404).
FetchImage = Callable[[str], bytes | None]


@dataclass(frozen=True)
class ImageStep:
    """One image to upload (`data` set) or to record as unchanged."""

    kind: str  # "poster" or "art"
    source: str
    sha256: str
    data: bytes | None  # None: Plex already has these bytes


def image_steps(desired: DesiredState, ledger: LedgerEntry | None, same_item: bool,
                fetch: FetchImage) -> list[ImageStep]:
    """Which images to upload: an unchanged URL on the same item costs nothing; a new URL is
    downloaded and uploaded only when its bytes differ from what we uploaded last; an image
    Stash does not have gives no step at all."""
    steps: list[ImageStep] = []
    cache: dict[str, bytes | None] = {}
    for kind, url in (("poster", desired.poster_url), ("art", desired.art_url)):
        if not url:
            continue
        last_source = getattr(ledger, f"{kind}_source", None) if ledger else None
        last_hash = getattr(ledger, f"{kind}_hash", None) if ledger else None
        if same_item and last_hash and last_source == url:
            steps.append(ImageStep(kind, url, last_hash, None))
            continue
        if url not in cache:
            cache[url] = fetch(url)
        data = cache[url]
        if not data:
            continue
        digest = hashlib.sha256(data).hexdigest()
        unchanged = same_item and digest == last_hash
        steps.append(ImageStep(kind, url, digest, None if unchanged else data))
    return steps
