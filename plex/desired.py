"""What the Plex item should look like, from a Stash scene and the settings. Pure.

A field is `None` when we do not manage it (its toggle is off, or the scene gives no
honest value); an empty string or empty tuple means "make it empty in Plex". The diff
relies on that difference.

Choices, each the answer to "what would surprise a user least":

* **title** is never blanked: a scene without a title leaves Plex's title alone.
  **title_sort** is the same text. Stash has no sort title; writing it keeps a renamed
  scene from sorting under the name Plex derived from the old file name.
* **tagline** is Stash's studio code (`code`, e.g. "ABC-123"), the one short line Stash has.
* **originally_available_at**: Stash's partial dates are completed to the first day
  (`2021` -> `2021-01-01`, `2021-06` -> `2021-06-01`); anything that is not a real date is
  left unmanaged rather than sent for Plex to reject.
* **rating**: Plex's `userRating` is 0-10 with one decimal; `rating100 / 10` maps every
  Stash value exactly (83 -> 8.3), so it is honest. Plex *draws* half stars, but stores
  what we send. It is the rating of the account whose token we use, as Stash's is the
  rating of its one user. It rides in the one edit as `userRating.value` (plexapi's
  `editUserRating`; plexapi's own tests against a real server read the value back with a
  locked `userRating` field, and Plex Web sends the same key, python-plexapi #354), so
  it costs no request of its own; `PUT /:/rate` (plexapi's `rate()`) would set the same
  value plus `lastRatedAt`, but as a second request per changed rating. An unrated scene
  leaves Plex's rating alone (a rating is a person's act; clearing one they gave in Plex
  would be a surprise). No toggle exists for it, so only `sync_master` controls it.
* **genres** are Stash tags in Stash's order, de-duplicated ignoring case (Plex tags are
  case-insensitive), at most `max_tags` (0 = no limit).
* **actors** are performers, with a photo only where Plex can honestly show it. The API
  has one way to give a person a photo: a URL in the tag edit (`actor[i].tag.thumb`);
  unlike posters there is no upload, so Plex (its photo transcoder) must fetch the URL
  itself. See `photo_for_plex` for which URLs are sent; a performer without one is still
  synced by name, and a photo Plex already shows for that person is left as it is.
* **collections**: the scene's studio, its networks and its groups, as `plex.collection_specs`
  names them (its docstring says which are on by default and why).
* **images**: poster and background both come from the scene's cover (`paths.screenshot`),
  a still image that Stash serves; a preview/stream URL (video) is never used.

Text limits (characters, after cleaning): `TITLE_MAX` 255 for every one-line field and tag
name, which is what Plex's own agents produce and its web editor shows without clipping;
`SUMMARY_MAX` 10,000 for the summary. Every value travels in the *query string* of one
PUT, which must stay under the 64 KiB URL size proxies and Plex accept. Character caps
alone do not do that: a CJK character is 9 bytes once percent-encoded, so 10,000 of them
in a summary, or ten thousand tags with `max_tags` 0, made an edit Plex refused (414) and a
scene that could never sync. So the summary and the genre and actor lists also have a
budget in percent-encoded bytes (`URL_BUDGET`): the summary is cut like any long text, and
names past the budget are left out, as past `max_tags`. Removals of Plex's own names can
double a list's share, which the budgets leave room for.
"""

from __future__ import annotations

import datetime as _dt
import functools
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from base.settings import Settings
from stash.records import Scene

TITLE_MAX = 255
SUMMARY_MAX = 10_000
#: Percent-encoded bytes the summary, the genres and the actors may each take in the edit's
#: URL; with every one-line field at its cap the whole request stays under 64 KiB.
URL_BUDGET = {"summary": 16_000, "genres": 9_000, "actors": 6_000}
#: What one list entry adds besides its name: `&genre%5B123%5D.tag.tag=`.
_ENTRY_OVERHEAD = 26
ELLIPSIS = "\u2026"

#: Unicode categories Cc (C0, DEL, C1) and Cs (lone surrogates), except tab and newline.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
#: The bytes `urllib.parse.quote(text, safe="")` leaves as they are; it writes every other
#: byte of the UTF-8 text as three characters (`%XX`).
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
_VIDEO_HINTS = re.compile(r"(\.(mp4|m4v|webm|mkv|mov|avi|m3u8|ts)(\?|$))|/(preview|stream|vtt)(/|\?|$)", re.I)


@dataclass(frozen=True)
class Actor:
    name: str
    thumb: str | None = None


@dataclass(frozen=True)
class DesiredState:
    """The Plex values one scene asks for; `None` = not managed (see module docstring)."""

    title: str | None = None
    title_sort: str | None = None
    studio: str | None = None
    summary: str | None = None
    tagline: str | None = None
    originally_available_at: str | None = None
    rating: float | None = None
    genres: tuple[str, ...] | None = None
    actors: tuple[Actor, ...] | None = None
    collections: tuple[str, ...] | None = None
    poster_url: str | None = None
    art_url: str | None = None


# --- text ------------------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary near the end when there is one."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space >= limit * 0.8:
        head = head[:space]
    return head.rstrip() + ELLIPSIS


def clean_text(text: str | None, limit: int = TITLE_MAX, multiline: bool = False) -> str:
    """NFC, no control characters, trimmed and capped.

    Control characters break Plex's XML answers (XML 1.0 cannot carry most of them) and
    lone surrogates cannot be encoded at all. A summary keeps newlines and tabs; a one-line
    field turns every run of whitespace into one space.
    """
    if not text:
        return ""
    # Most text is clean already, and a bulk pass cleans several names per scene.
    return _cut(text if already_clean(text) else _cleaned(text, multiline).strip(), limit)


def already_clean(text: str) -> bool:
    """Text `_cleaned` leaves as it is: printable (no control character, line break, tab or
    other space than " "), no two spaces together or at either end, and in NFC."""
    return (text.isprintable() and "  " not in text and text[:1] != " " != text[-1:]
            and unicodedata.is_normalized("NFC", text))


def _cleaned(text: str, multiline: bool) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)  # one regex pass: per-character checks dominated bulk runs
    if not multiline:
        text = text.replace("\n", " ").replace("\t", " ")
    return "\n".join(line.rstrip() for line in text.split("\n")) if multiline else " ".join(text.split())


# --- field rules -----------------------------------------------------------------------


def complete_date(value: str | None) -> str | None:
    """`YYYY`, `YYYY-MM` or `YYYY-MM-DD` to a real `YYYY-MM-DD`, else None."""
    if not value:
        return None
    parts = value.strip().split("-")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    numbers = [int(p) for p in parts] + [1] * (3 - len(parts))
    try:
        return _dt.date(numbers[0], numbers[1], numbers[2]).isoformat()
    except ValueError:
        return None


def _date(value: str | None) -> str | None:
    """No date clears Plex's; a date that is not real leaves Plex's alone."""
    return complete_date(value) if value else ""


def rating_from(rating100: int | None) -> float | None:
    """Stash 0-100 to Plex 0-10 with one decimal; None (or out of range) leaves Plex alone."""
    if rating100 is None or not 0 < rating100 <= 100:
        return None
    return round(rating100 / 10, 1)


def encoded_size(text: str) -> int:
    """Its length in a query string: `len(quote(text, safe=""))` without building the text."""
    data = text.encode("utf-8")
    return len(data) + 2 * len(data.translate(None, _UNRESERVED))


def fit_encoded(text: str, budget: int) -> str:
    """`text`, cut (as `_cut` does) to the longest prefix whose encoding fits `budget`."""
    if encoded_size(text) <= budget:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest cut that fits: about 14 encodings for a 10,000-character text
        middle = (low + high + 1) // 2
        if encoded_size(_cut(text, middle)) <= budget:
            low = middle
        else:
            high = middle - 1
    return _cut(text, low) if low else ""


def within_budget(sizes: list[int], budget: int) -> int:
    """How many of the leading entries fit `budget`, each costing its size plus the overhead."""
    used = 0
    for count, size in enumerate(sizes):
        used += size + _ENTRY_OVERHEAD
        if used > budget:
            return count
    return len(sizes)


def unique_names(names: tuple[str, ...], limit: int = 0) -> tuple[str, ...]:
    """Cleaned, non-empty, first spelling kept when case differs, at most `limit` (0 = all)."""
    seen: set[str] = set()
    out: list[str] = []
    for raw in names:
        name = clean_text(raw)
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(name)
    out = out[:limit] if limit > 0 else out
    return tuple(out[: within_budget([encoded_size(n) for n in out], URL_BUDGET["genres"])])


def still_image_url(url: str | None) -> str | None:
    """`url` if it can be a still image; video and stream URLs are refused."""
    if not url or _VIDEO_HINTS.search(url.split("#", 1)[0]):
        return None
    return url


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").casefold()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


@functools.lru_cache(maxsize=4096)  # a performer's URL recurs in each of their scenes
def photo_for_plex(url: str | None, plex_url: str) -> str | None:
    """`url` if Plex can fetch it as a person's photo, else None (the name syncs without it).

    Refused:

    * anything but an http(s) still image;
    * a URL carrying credentials (`user:pass@`, `apikey=`): Plex stores a tag's photo URL
      in its database and hands it to every client, so a key in it would leak. We never
      add one, which also means that when Stash requires a login its image URLs answer
      Plex 401 and no photo shows (a limitation, not something to work around);
    * a loopback address (127.0.0.1, ::1, localhost) unless Plex itself is reached over
      loopback. Stash builds image URLs from the address the plugin used, usually
      127.0.0.1, which on Plex's machine means Plex itself. Stash's External Host setting
      gives URLs that work from elsewhere.
    """
    url = still_image_url(url)
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username or parts.password or any(k.casefold() == "apikey" for k, _ in parse_qsl(parts.query)):
        return None
    if _loopback(parts.hostname) and not _loopback(urlsplit(plex_url or "").hostname):
        return None
    return url


def _actors(scene: Scene, plex_url: str) -> tuple[Actor, ...]:
    seen: set[str] = set()
    out = []
    for performer in scene.performers:
        name = clean_text(performer.name)
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(Actor(name, photo_for_plex(performer.image_url, plex_url)))
    sizes = [encoded_size(a.name) + (encoded_size(a.thumb) + _ENTRY_OVERHEAD if a.thumb else 0) for a in out]
    return tuple(out[: within_budget(sizes, URL_BUDGET["actors"])])


def desired_state(scene: Scene, settings: Settings) -> DesiredState:
    """The state `scene` asks for under `settings`' toggles.

    A scene without metadata (just scanned, not yet identified) manages only fields it has
    a value for, so an early update can never clear what Plex shows (the quality gate).
    """
    from plex.collection_specs import managed, scene_collections  # it builds on this module's text rules

    on = settings.field_enabled
    title = clean_text(scene.title) or None
    studio = clean_text(scene.studio.name) if scene.studio else ""
    cover = still_image_url(scene.screenshot_url)
    state = DesiredState(
        title=title if on("sync_title") else None,
        title_sort=title if on("sync_title") else None,
        studio=studio if on("sync_studio") else None,
        summary=fit_encoded(clean_text(scene.details, SUMMARY_MAX, multiline=True), URL_BUDGET["summary"])
        if on("sync_summary") else None,
        tagline=clean_text(scene.code) if on("sync_tagline") else None,
        originally_available_at=_date(scene.date) if on("sync_date") else None,
        rating=rating_from(scene.rating100) if settings.sync_master else None,
        genres=unique_names(scene.tags, settings.max_tags) if on("sync_tags") else None,
        actors=_actors(scene, settings.plex_url) if on("sync_performers") else None,
        collections=tuple(c.title for c in scene_collections(scene, settings)) if managed(settings) else None,
        poster_url=cover if on("sync_poster") else None,
        art_url=cover if on("sync_background") else None,
    )
    return state if scene.has_metadata else _only_values(state)


def _only_values(state: DesiredState) -> DesiredState:
    """Every empty field becomes unmanaged."""
    return DesiredState(**{name: (value or None) for name, value in vars(state).items()})
