"""Stash paths to Plex paths and back, as pure string functions.

Stash and Plex often see the same files under different folders (two Docker containers, a
NAS mounted at different points, Stash on Linux and Plex on Windows). `path_map` pairs a
Stash prefix with a Plex prefix; the longest matching Stash prefix wins (`parse_path_map`
already sorts them that way).

Why strings and not `pathlib`: the two sides may use different operating systems, so the
path style is a property of each *string*, not of the machine we run on. A path is
"Windows style" when it starts with a drive letter (`C:`) or a UNC prefix (`\\\\server`);
such paths compare case-insensitively and with either separator, because that is how
Windows resolves them. POSIX paths compare exactly.

Every comparison is made in Unicode NFC (`base.unicode_forms`): the same name reaches Stash
and Plex in different normal forms, and compared code point by code point such a scene would
match nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from base.unicode_forms import nfc

PathMap = Sequence[tuple[str, str]]

_DRIVE = re.compile(r"^[A-Za-z]:([\\/]|$)")


def is_windows_path(path: str) -> bool:
    """True for `C:\\x`, `c:/x` and UNC `\\\\host\\share`: the paths Windows resolves case-insensitively."""
    return bool(_DRIVE.match(path)) or path.startswith("\\\\")


def _split(path: str) -> list[str]:
    """Components with either separator; empty components (doubled separators) dropped."""
    return [part for part in re.split(r"[\\/]", path) if part]


def path_key(path: str) -> str:
    """The form two paths are compared in: equal keys mean the same file.

    Windows-style paths lose case and separator differences; POSIX paths only lose doubled
    and trailing separators (a POSIX file system is case-sensitive, so `A.mp4` and `a.mp4`
    are two files). Both in NFC.
    """
    path = nfc(path)
    if is_windows_path(path):
        lead = "//" if path.startswith("\\\\") else ""
        return lead + "/".join(_split(path)).casefold()
    lead = "/" if path.startswith("/") else ""
    key = lead + "/".join(_split(path))
    return path if key == path else key  # the index keeps one string per path, not two


def basename_key(path: str) -> str:
    """The file-name part, compared case-insensitively (and in NFC): the fallback matches
    across OSes."""
    parts = _split(nfc(path))
    return parts[-1].casefold() if parts else ""


def _strip_prefix(path: str, prefix: str) -> list[str] | None:
    """The components after `prefix`, or None when `path` is not inside `prefix`.

    Whole components only: `/data` is a prefix of `/data/a.mp4`, not of `/database/a.mp4`.
    """
    fold = is_windows_path(prefix) or is_windows_path(path)
    head, tail = _split(prefix), _split(path)
    if len(tail) < len(head):
        return None
    if prefix.startswith("/") != path.startswith("/") and not fold:
        return None
    for want, got in zip(map(nfc, head), map(nfc, tail), strict=False):
        if (want.casefold() != got.casefold()) if fold else (want != got):
            return None
    return tail[len(head):]


def _join(prefix: str, rest: list[str]) -> str:
    """Join in the style of `prefix`: backslashes after a Windows prefix, slashes otherwise."""
    sep = "\\" if is_windows_path(prefix) or ("\\" in prefix and "/" not in prefix) else "/"
    base = prefix.rstrip("\\/")
    if not rest:
        return base or sep
    return base + sep + sep.join(rest)


def _apply(path: str, pairs: PathMap, reverse: bool) -> str:
    ordered = sorted(pairs, key=lambda p: len(p[1] if reverse else p[0]), reverse=True)
    for stash_prefix, plex_prefix in ordered:
        src, dst = (plex_prefix, stash_prefix) if reverse else (stash_prefix, plex_prefix)
        rest = _strip_prefix(path, src)
        if rest is not None:
            return _join(dst, rest)
    return path


def to_plex(path: str, pairs: PathMap) -> str:
    """Where Plex sees the file Stash calls `path`; unchanged when no prefix applies."""
    return _apply(path, pairs, reverse=False)


def to_stash(path: str, pairs: PathMap) -> str:
    """The inverse of `to_plex`, for messages that show a Plex path to a Stash user."""
    return _apply(path, pairs, reverse=True)


def parent_folder(path: str) -> str:
    """The folder holding `path`, in the path's own style (what a partial scan asks for)."""
    cut = max(path.rfind("/"), path.rfind("\\"))
    if cut <= 0:
        return path[:1] if cut == 0 else path
    folder = path[:cut]
    return folder + "\\" if re.fullmatch(r"[A-Za-z]:", folder) else folder
