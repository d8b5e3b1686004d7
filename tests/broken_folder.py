"""Breaking a data folder for real: a read-only mount, a disk that fills up.

Read-only: as root, a read-only bind mount of the folder onto itself (root ignores file
modes, a read-only mount it cannot); otherwise chmod, which binds every other user. Full
disk: a small tmpfs mounted over the folder, root only (skipped elsewhere). Both are undone
on exit, whatever the test did.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    for _ in range(50):  # a detached process may still hold a file open for an instant
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        subprocess.run(["sleep", "0.1"])
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    folder = Path(folder)
    if os.geteuid() == 0:
        if not _mount("--bind", str(folder), str(folder)):
            pytest.skip("cannot bind-mount here")
        if not _mount("-o", "remount,bind,ro", str(folder)):
            _umount(folder)
            pytest.skip("cannot remount read-only here")
        try:
            yield
        finally:
            _umount(folder)
        return
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    for path in modes:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


@contextlib.contextmanager
def small_disk(folder: Path, size_kib: int = 2048) -> Iterator[Path]:
    """Mount a `size_kib` tmpfs over `folder`, keeping what it held; yields the folder."""
    folder = Path(folder)
    if os.geteuid() != 0:
        pytest.skip("a size-limited file system needs root (tmpfs mount)")
    keep = Path(tempfile.mkdtemp(prefix="s2p-keep-"))
    shutil.copytree(folder, keep, dirs_exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)):
        pytest.skip("cannot mount tmpfs here")
    try:
        shutil.copytree(keep, folder, dirs_exist_ok=True)
        yield folder
    finally:
        _umount(folder)
        shutil.rmtree(keep, ignore_errors=True)


def fill(folder: Path) -> Path:
    """Write a file until the disk is full; delete it to give the space back."""
    filler = Path(folder) / "filler"
    handle = open(filler, "wb")  # noqa: SIM115 - closed below, whatever the write did
    try:
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    except OSError:
        pass
    with contextlib.suppress(OSError):
        handle.close()
    while True:  # top up in small writes until not even those fit
        try:
            with open(filler, "ab") as more:
                more.write(b"\0" * 512)
        except OSError:
            break
    return filler
