"""plex.pathmap: Stash paths to Plex paths, both path styles, as tables."""

from __future__ import annotations

import pytest

from plex.pathmap import basename_key, is_windows_path, parent_folder, path_key, to_plex, to_stash

DOCKER = (("/data/stash", "/media/stash"),)
NESTED = (("/data/stash/vr", "/vr"), ("/data/stash", "/media/stash"))
TO_WINDOWS = (("/data/stash", "D:\\Media\\Stash"),)
UNC = (("/data", "\\\\nas\\share"),)


@pytest.mark.parametrize(("path", "pairs", "expected"), [
    ("/data/stash/a/b.mp4", DOCKER, "/media/stash/a/b.mp4"),
    ("/data/stash", DOCKER, "/media/stash"),
    ("/data/stashed/b.mp4", DOCKER, "/data/stashed/b.mp4"),  # whole components only
    ("/other/b.mp4", DOCKER, "/other/b.mp4"),  # no prefix applies: unchanged
    ("/data/Stash/b.mp4", DOCKER, "/data/Stash/b.mp4"),  # POSIX is case-sensitive
    ("/data/stash/vr/x.mp4", NESTED, "/vr/x.mp4"),  # longest prefix wins
    ("/data/stash/vr/x.mp4", tuple(reversed(NESTED)), "/vr/x.mp4"),  # whatever the order given
    ("/data/stash/flat/x.mp4", NESTED, "/media/stash/flat/x.mp4"),
    ("/data/stash/a/b.mp4", TO_WINDOWS, "D:\\Media\\Stash\\a\\b.mp4"),
    ("/data/x/y.mkv", UNC, "\\\\nas\\share\\x\\y.mkv"),
    ("C:\\Videos\\A.mp4", (("c:/videos", "/mnt/v"),), "/mnt/v/A.mp4"),  # Windows side folds case
    ("/data/stash//a//b.mp4", DOCKER, "/media/stash/a/b.mp4"),  # doubled separators
    ("/data/stash/a/b.mp4", (("/data/stash/", "/media/stash/"),), "/media/stash/a/b.mp4"),
    ("/data/stash/a.mp4", (), "/data/stash/a.mp4"),
])
def test_to_plex(path: str, pairs: tuple[tuple[str, str], ...], expected: str) -> None:
    assert to_plex(path, pairs) == expected


@pytest.mark.parametrize(("plex", "pairs", "expected"), [
    ("/media/stash/a/b.mp4", DOCKER, "/data/stash/a/b.mp4"),
    ("D:\\Media\\Stash\\a\\b.mp4", TO_WINDOWS, "/data/stash/a/b.mp4"),
    ("/vr/x.mp4", NESTED, "/data/stash/vr/x.mp4"),
])
def test_to_stash_inverts(plex: str, pairs: tuple[tuple[str, str], ...], expected: str) -> None:
    assert to_stash(plex, pairs) == expected
    assert to_plex(expected, pairs) == plex


@pytest.mark.parametrize(("a", "b", "same"), [
    ("/media/a.mp4", "/media/a.mp4", True),
    ("/media/a.mp4", "/media//a.mp4", True),
    ("/media/A.mp4", "/media/a.mp4", False),  # two files on a POSIX file system
    ("/media/x/a.mp4", "/media/y/a.mp4", False),  # same name, different folder
    ("D:\\Media\\A.mp4", "d:/media/a.mp4", True),  # Windows: case and separator fold
    ("\\\\NAS\\share\\a.mp4", "\\\\nas\\share\\A.MP4", True),
    ("\\\\nas\\share\\a.mp4", "/nas/share/a.mp4", False),  # UNC is not a POSIX root
    ("media/a.mp4", "/media/a.mp4", False),  # relative is not absolute
])
def test_path_key(a: str, b: str, same: bool) -> None:
    assert (path_key(a) == path_key(b)) is same


@pytest.mark.parametrize(("path", "windows"), [
    ("C:\\x", True), ("c:/x", True), ("Z:", True), ("\\\\host\\share", True),
    ("/c:/x", False), ("/media/x", False), ("relative\\x", False),
])
def test_is_windows_path(path: str, windows: bool) -> None:
    assert is_windows_path(path) is windows


@pytest.mark.parametrize(("path", "folder"), [
    ("/media/stash/a/b.mp4", "/media/stash/a"),
    ("/b.mp4", "/"),
    ("D:\\Media\\b.mp4", "D:\\Media"),
    ("D:\\b.mp4", "D:\\"),
    ("\\\\nas\\share\\b.mp4", "\\\\nas\\share"),
    ("b.mp4", "b.mp4"),
])
def test_parent_folder(path: str, folder: str) -> None:
    assert parent_folder(path) == folder


def test_basename_key_ignores_folder_style_and_case() -> None:
    assert basename_key("/a/B.mp4") == basename_key("C:\\x\\b.MP4") == "b.mp4"
    assert basename_key("") == ""
