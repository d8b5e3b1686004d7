"""Stash's plugin package manager, emulated for tests: read an index, install, upgrade, uninstall.

It follows stashapp/stash `pkg/pkg` (pkg.go, manager.go, store.go, repository_http.go) so
that a test exercising it exercises what users' Stash does, including its rough edges:

* The index is a YAML list of packages (``id``, ``name``, ``metadata``, ``version``, ``date``,
  ``path``, ``sha256``, ``requires``); unknown keys are ignored (``yaml.Unmarshal``, not
  strict); ``date`` is ``YYYY-MM-DD HH:MM:SS`` in UTC, or the legacy form with a zone offset.
  A relative ``path`` is joined to the index's folder.
* Install reads the whole zip, rejects it if its sha256 differs from the index's, then, if a
  manifest says the package is already installed, deletes that install's files first (this
  is how an upgrade works). Every non-directory entry is written to ``<plugins>/<id>/<name>``
  with the entry's mode, and a manifest listing those names is written to the file
  ``manifest`` (Stash's ``pkg.ManifestFile``: no extension, so Stash never parses it as a
  plugin config) in the package folder.
* Uninstall deletes exactly the listed files and the manifest, then ``os.Remove`` s the
  package folder, ignoring the error. Subfolders are not removed, so the folder survives
  whenever the zip had subfolders (or Python left ``__pycache__`` folders); files the plugin
  created itself are never touched.
* "Upgrade available" means the index's date is after the installed manifest's date; the
  version string plays no part.

Plugins installed from a source land under ``<plugins>/<source local path>/<id>``; tests
pick the plugins root they want and pass it as `base_dir`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

MANIFEST_FILE = "manifest"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
LEGACY_TIME_FORMAT = "%Y-%m-%d %H:%M:%S %z"


class PackageError(Exception):
    """Stash would fail this operation with an error in its UI."""


def parse_time(value: Any) -> datetime:
    """pkg.Time.UnmarshalYAML: the UTC format first, then the legacy one with an offset."""
    text = str(value)
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        try:
            return datetime.strptime(text, LEGACY_TIME_FORMAT).astimezone(timezone.utc)
        except ValueError:
            raise PackageError(f"parsing time {text!r} as {TIME_FORMAT!r}") from None


def _string(value: Any, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise PackageError(f"reading package list: {key} is not a string")
    return str(value)


@dataclass(frozen=True)
class RemotePackage:
    """One entry of a source's index.yml."""

    id: str
    name: str
    version: str
    date: datetime
    path: str
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()


def parse_index(text: str) -> list[RemotePackage]:
    """Parse index.yml as `yaml.Unmarshal(data, &[]RemotePackage)` would."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PackageError(f"reading package list: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise PackageError("reading package list: the index is not a YAML list")
    packages = []
    for item in data:
        if not isinstance(item, dict):
            raise PackageError("reading package list: an entry is not a mapping")
        metadata = item.get("metadata") or {}
        requires = item.get("requires") or []
        if not isinstance(metadata, dict) or not isinstance(requires, list):
            raise PackageError("reading package list: metadata must be a mapping and requires a list")
        if "date" not in item:
            raise PackageError(f"package {item.get('id')!r} has no date: Stash could never offer an upgrade")
        packages.append(RemotePackage(
            id=_string(item.get("id"), "id"), name=_string(item.get("name"), "name"),
            version=_string(item.get("version"), "version"), date=parse_time(item["date"]),
            path=_string(item.get("path"), "path"), sha256=_string(item.get("sha256"), "sha256"),
            metadata=dict(metadata), requires=tuple(str(r) for r in requires),
        ))
    return packages


@dataclass(frozen=True)
class Source:
    """A plugin source: an index.yml on disk (Stash also accepts file:// URLs)."""

    index_path: Path

    def packages(self) -> list[RemotePackage]:
        return parse_index(self.index_path.read_text(encoding="utf-8"))

    def package(self, package_id: str) -> RemotePackage:
        for pkg in self.packages():
            if pkg.id == package_id:
                return pkg
        raise PackageError(f"package {package_id!r} not found in repository")

    def zip_bytes(self, pkg: RemotePackage) -> bytes:
        """httpRepository.resolvePath: relative paths are joined to the index's folder."""
        if posixpath.isabs(pkg.path):
            where = Path(pkg.path)
        else:
            where = self.index_path.parent / Path(*posixpath.normpath(pkg.path).split("/"))
        return where.read_bytes()

    @property
    def url(self) -> str:
        return self.index_path.resolve().as_uri()


def _entry_mode(info: zipfile.ZipInfo) -> int:
    """Go's zip FileHeader.Mode() permission bits: Unix attrs if present, else 0666/0444."""
    unix = (info.external_attr >> 16) & 0o777
    if info.create_system == 3 and unix:
        return unix
    return 0o444 if info.external_attr & 0x01 else 0o666


@dataclass
class PluginStore:
    """The plugins folder of one Stash (or one source's subfolder of it)."""

    base_dir: Path

    def package_dir(self, package_id: str) -> Path:
        return self.base_dir / package_id

    def manifest_path(self, package_id: str) -> Path:
        return self.package_dir(package_id) / MANIFEST_FILE

    def manifest(self, package_id: str) -> dict[str, Any]:
        path = self.manifest_path(package_id)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PackageError(f"package {package_id!r} does not exist") from None
        return data or {}

    def installed(self) -> list[dict[str, Any]]:
        """Store.List: every subfolder with a manifest; others are ignored."""
        if not self.base_dir.is_dir():
            return []
        found = []
        for child in sorted(self.base_dir.iterdir()):
            if child.is_dir() and (child / MANIFEST_FILE).is_file():
                found.append(self.manifest(child.name))
        return found

    def upgradable(self, source: Source, package_id: str) -> bool:
        """PackageStatus.Upgradable: the remote date is after the installed one."""
        local = parse_time(self.manifest(package_id)["date"])
        return source.package(package_id).date > local

    # --- Manager.Install / Uninstall --------------------------------------------------------

    def install(self, source: Source, package_id: str) -> list[str]:
        """Install or upgrade `package_id` from `source`; return the files written."""
        pkg = source.package(package_id)
        data = source.zip_bytes(pkg)
        sha = hashlib.sha256(data).hexdigest()
        if sha != pkg.sha256:
            raise PackageError(f"package data ({sha}) does not match expected SHA256 ({pkg.sha256})")
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile as exc:
            raise PackageError(f"reading zip data: {exc}") from None
        if self.manifest_path(pkg.id).is_file():
            self._delete_package_files(pkg.id)
        return self._install_package(pkg, source, archive)

    def _install_package(self, pkg: RemotePackage, source: Source, archive: zipfile.ZipFile) -> list[str]:
        files: list[str] = []
        target = self.package_dir(pkg.id)
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = os.path.normpath(info.filename)  # filepath.Clean
            dest = target / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _entry_mode(info))
            with os.fdopen(fd, "wb") as out:
                out.write(archive.read(info))
            files.append(name)
        manifest = {
            "id": pkg.id, "name": pkg.name, "metadata": pkg.metadata, "version": pkg.version,
            "date": pkg.date.strftime(TIME_FORMAT), "requires": list(pkg.requires),
            "source_repository": source.url, "files": files,
        }
        self.manifest_path(pkg.id).write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        return files

    def _delete_package_files(self, package_id: str) -> None:
        """Manager.deletePackageFiles: each listed file (errors ignored), then the manifest."""
        manifest = self.manifest(package_id)
        folder = self.package_dir(package_id)
        for name in manifest.get("files") or []:
            try:
                os.remove(folder / name)
            except OSError:
                continue
        os.remove(self.manifest_path(package_id))

    def uninstall(self, package_id: str) -> None:
        """Manager.Uninstall: delete the listed files, then try (only) to remove the folder."""
        self._delete_package_files(package_id)
        with contextlib.suppress(OSError):
            os.rmdir(self.package_dir(package_id))
