"""Build a release: the plugin zip Stash installs and the index.yml a plugin source serves.

    python -m release.build [--out dist] [--version 1.2.3] [--date "2025-01-31 12:00:00"]

Why a build at all: users install from Stash's UI, most of them in Stash's official Docker
image, which has requests and stashapp-tools but not plexapi, persist-queue, tenacity or
filelock, and no git (so PythonDepManager cannot help). The zip therefore carries those four
pure-Python packages under ``vendor/``, which the entrypoint puts on ``sys.path``.

What the zip must not carry: anything the runtime does not need (tests, benchmarks, the
emulators, docs), and above all any ``.yml`` besides ``Stash2Plex.yml``: Stash walks the whole
plugins folder and parses every ``.yml`` as a plugin config, so a stray one is an "Error
loading plugin" line in every user's log. The build fails rather than ship one.

Reproducibility: entries are sorted, carry one fixed timestamp and fixed permissions, and no
directory entries, so the same sources and pins give the same bytes and the same sha256. Only
the index's ``date`` follows the clock (or ``SOURCE_DATE_EPOCH``), because Stash decides
"upgrade available" by comparing dates, not versions.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_ID = "Stash2Plex"
MANIFEST = f"{PLUGIN_ID}.yml"
ZIP_NAME = f"{PLUGIN_ID}.zip"
INDEX_NAME = "index.yml"
VENDOR_PINS = Path(__file__).resolve().parent / "vendor.txt"

#: Top-level files the runtime reads (README and LICENSE travel for the user's benefit).
TOP_FILES = ("Stash2Plex.py", MANIFEST, "requirements.txt", "README.md", "LICENSE", "LICENSE.txt")
#: Our runtime packages. emulators/ is shipped tooling for tests and demos, never imported
#: by the runtime (docs/DESIGN.md), so it stays out.
PACKAGES = ("base", "sync_queue", "stash", "plex", "reconciliation", "watch", "worker", "tasks", "plugin")
#: Non-Python files a runtime package may carry; anything else is reported and left out.
DATA_SUFFIXES = frozenset({".py", ".graphql", ".gql", ".sql", ".json", ".txt", ".typed"})
#: Parts of vendored distributions that only cost bytes: compiled caches, software bills of
#: materials (filelock's is 0.5 MB), console scripts, and a package's own test suite.
VENDOR_DROP_ANYWHERE = frozenset({"__pycache__", "sboms"})
VENDOR_DROP_TOP = frozenset({"bin"})
VENDOR_DROP_SECOND = frozenset({"tests"})

#: Stash's pkg.TimeFormat (Go layout "2006-01-02 15:04:05"), always UTC.
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
#: The one timestamp every zip entry carries (the zip epoch); Stash ignores entry times.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644


class BuildError(RuntimeError):
    """The release would be wrong; the message says what to fix."""


@dataclass(frozen=True)
class Release:
    """What one build produced."""

    zip_path: Path
    index_path: Path
    version: str
    date: str
    sha256: str
    files: tuple[str, ...]


# --- what goes in -------------------------------------------------------------------------


def manifest_version(manifest_text: str) -> str:
    """The ``version:`` of Stash2Plex.yml, read without a YAML dependency at run time."""
    match = re.search(r"^version:\s*['\"]?([^'\"\s#]+)", manifest_text, re.MULTILINE)
    if not match:
        raise BuildError(f"{MANIFEST} has no top-level 'version:'")
    return match.group(1)


def with_version(manifest_text: str, version: str) -> str:
    """Stash2Plex.yml with its version replaced, so a build for N+1 says N+1 in Stash's UI."""
    if not re.fullmatch(r"\d+(\.\d+){0,2}", version):
        # CommunityScripts' validator and Stash's UI expect plain dotted numbers.
        raise BuildError(f"version {version!r} is not of the form 1, 1.2 or 1.2.3")
    return re.sub(r"^version:.*$", f"version: {version}", manifest_text, count=1, flags=re.MULTILINE)


def runtime_files(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Archive name -> source path for our own code, plus the files deliberately left out."""
    chosen: dict[str, Path] = {}
    skipped: list[str] = []
    for name in TOP_FILES:
        if (root / name).is_file():
            chosen[name] = root / name
    for package in PACKAGES:
        base = root / package
        if not base.is_dir():
            # A package that has not landed yet is simply absent from the release; the
            # runtime imports it lazily and says "not available yet".
            continue
        for path in sorted(base.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            rel = path.relative_to(root).as_posix()
            if path.suffix in DATA_SUFFIXES:
                chosen[rel] = path
            else:
                skipped.append(rel)
    return chosen, skipped


def read_pins(path: Path = VENDOR_PINS) -> list[str]:
    """The exact requirement lines of release/vendor.txt (comments and blanks dropped)."""
    pins = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            if "==" not in line:
                raise BuildError(f"{path.name}: {line!r} is not an exact pin (name==version)")
            pins.append(line)
    return pins


def pins_key(pins: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(pins)).encode()).hexdigest()[:16]


def install_vendor(target: Path, pins: list[str], python: str = sys.executable) -> None:
    """pip-install the pins as wheels only, without dependencies and without byte-compiling.

    ``--only-binary=:all:`` refuses sdists, so nothing is built (no compiler, no setup.py
    run); ``--no-deps`` keeps requests out, which the image already has.
    """
    cmd = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-deps", "--only-binary=:all:", "--no-compile", "--target", str(target), *pins]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"pip could not fetch the vendored packages:\n{done.stderr.strip()}")


def vendor_tree(pins: list[str], cache_dir: Path | None) -> Path:
    """A folder holding the vendored packages, reused from `cache_dir` when the pins match."""
    if cache_dir is not None:
        cached = cache_dir / f"vendor-{pins_key(pins)}"
        if (cached / ".complete").is_file():
            return cached
        # Stage inside the cache folder so the final rename never crosses file systems.
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache_dir))
        install_vendor(staging, pins)
        (staging / ".complete").write_text("\n".join(pins) + "\n", encoding="utf-8")
        try:
            staging.rename(cached)
        except OSError:  # another build won the race; its copy is as good as ours
            shutil.rmtree(staging, ignore_errors=True)
        return cached
    staging = Path(tempfile.mkdtemp(prefix="vendor-"))
    install_vendor(staging, pins)
    return staging


def vendor_files(tree: Path) -> dict[str, Path]:
    """Archive name -> path for everything under the vendor tree that the runtime can use."""
    chosen: dict[str, Path] = {}
    for path in sorted(tree.rglob("*")):
        rel_parts = path.relative_to(tree).parts
        if not path.is_file() or path.suffix == ".pyc" or VENDOR_DROP_ANYWHERE.intersection(rel_parts):
            continue
        if rel_parts[0] in VENDOR_DROP_TOP or (len(rel_parts) > 2 and rel_parts[1] in VENDOR_DROP_SECOND):
            continue
        if rel_parts == (".complete",):
            continue
        if path.suffix == ".yml":
            # Stash would try to load it as a plugin manifest. None of the current pins has
            # one; dropping it silently could break a package, so refuse instead.
            raise BuildError(f"vendored file {'/'.join(rel_parts)} is a .yml: Stash would parse it as a "
                             f"plugin config. Pin another version or exclude it explicitly.")
        if path.suffix in (".so", ".pyd", ".dylib"):
            raise BuildError(f"vendored file {'/'.join(rel_parts)} is a compiled extension: only "
                             f"pure-Python packages can ship in a zip that runs on every platform.")
        chosen["vendor/" + "/".join(rel_parts)] = path
    return chosen


# --- what comes out -------------------------------------------------------------------------


def build_date(source_date_epoch: str | None = None, now: datetime | None = None) -> str:
    """The index date: SOURCE_DATE_EPOCH if given (reproducible builds), else now, in UTC."""
    if source_date_epoch:
        moment = datetime.fromtimestamp(int(source_date_epoch), tz=timezone.utc)
    else:
        moment = now or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime(DATE_FORMAT)


def write_zip(dest: Path, entries: dict[str, bytes]) -> str:
    """Write a deterministic zip and return its sha256."""
    with zipfile.ZipFile(dest, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the mode below is what Stash's f.Mode() reads
            info.external_attr = (0o100000 | FILE_MODE) << 16
            archive.writestr(info, entries[name], compresslevel=9)
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def _yaml_str(value: str) -> str:
    """A double-quoted YAML scalar: safe for dates, versions like 1.10 and any description."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def index_text(package_id: str, name: str, description: str, version: str, date: str,
               zip_name: str, sha256: str, requires: list[str] | None = None) -> str:
    """index.yml in Stash's pkg.RemotePackage shape: a YAML list of packages.

    Every scalar is quoted: an unquoted ``version: 1.10`` would be a float to YAML 1.1, and an
    unquoted date a timestamp; Stash reads both as strings.
    """
    reqs = requires or []
    lines = [
        f"- id: {_yaml_str(package_id)}",
        f"  name: {_yaml_str(name)}",
        "  metadata:",
        f"    description: {_yaml_str(description)}",
        f"  version: {_yaml_str(version)}",
        f"  date: {_yaml_str(date)}",
        f"  path: {_yaml_str(zip_name)}",
        f"  sha256: {_yaml_str(sha256)}",
        "  requires: [" + ", ".join(_yaml_str(r) for r in reqs) + "]",
    ]
    return "\n".join(lines) + "\n"


def _manifest_field(text: str, key: str) -> str:
    match = re.search(rf"^{key}:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip().strip("'\"") if match else ""


def build(out_dir: Path, *, root: Path = ROOT, version: str | None = None, date: str | None = None,
          vendor: bool = True, vendor_cache: Path | None = None, pins: list[str] | None = None,
          log: object = None) -> Release:
    """Build Stash2Plex.zip and index.yml into `out_dir` and return what was built."""
    say = (lambda msg: print(msg, file=sys.stderr)) if log is None else log  # type: ignore[assignment]
    manifest_text = (root / MANIFEST).read_text(encoding="utf-8")
    if version is not None:
        manifest_text = with_version(manifest_text, version)
    version = manifest_version(manifest_text)

    sources, skipped = runtime_files(root)
    for rel in skipped:
        say(f"left out (not a runtime file type): {rel}")  # type: ignore[operator]
    entries: dict[str, bytes] = {rel: path.read_bytes() for rel, path in sources.items()}
    entries[MANIFEST] = manifest_text.encode("utf-8")
    if vendor:
        tree = vendor_tree(pins if pins is not None else read_pins(), vendor_cache)
        entries.update({rel: path.read_bytes() for rel, path in vendor_files(tree).items()})

    stray = sorted(n for n in entries if n.endswith(".yml") and n != MANIFEST)
    if stray:
        raise BuildError(f"these .yml files would be parsed by Stash as plugin configs: {stray}")
    unsafe = sorted(n for n in entries if n.startswith("/") or ".." in n.split("/"))
    if unsafe:
        raise BuildError(f"unsafe archive names: {unsafe}")

    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / ZIP_NAME
    sha = write_zip(zip_path, entries)
    stamp = date or build_date(os.environ.get("SOURCE_DATE_EPOCH"))
    datetime.strptime(stamp, DATE_FORMAT)  # fail here, not in every user's Stash
    index_path = out_dir / INDEX_NAME
    index_path.write_text(
        index_text(PLUGIN_ID, _manifest_field(manifest_text, "name") or PLUGIN_ID,
                   _manifest_field(manifest_text, "description"), version, stamp, ZIP_NAME, sha),
        encoding="utf-8",
    )
    return Release(zip_path, index_path, version, stamp, sha, tuple(sorted(entries)))


def export_ref(ref: str, dest: Path, repo: Path = ROOT) -> Path:
    """The tree of git commit `ref`, extracted into `dest`: a release from exactly what was
    committed, without the working tree's uncommitted or untracked files."""
    import io
    import tarfile

    done = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", ref], capture_output=True)
    if done.returncode != 0:
        raise BuildError(f"git archive {ref}: {done.stderr.decode(errors='replace').strip()}")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(dest, filter="data")
        else:  # pragma: no cover - Pythons before the extraction filters; our own archive
            archive.extractall(dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m release.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--version", help="override Stash2Plex.yml's version in the zip and the index")
    parser.add_argument("--date", help=f"index date, UTC, '{DATE_FORMAT}' (default: SOURCE_DATE_EPOCH or now)")
    parser.add_argument("--no-vendor", action="store_true", help="leave vendor/ out (for a Python that has the deps)")
    parser.add_argument("--vendor-cache", type=Path, default=ROOT / "build",
                        help="reuse vendored packages from here when the pins match (default: build/)")
    parser.add_argument("--ref", help="build from this git commit (e.g. HEAD or a tag) instead of the "
                                      "working tree, so uncommitted files cannot slip in")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="stash2plex-ref-") as scratch:
            root = export_ref(args.ref, Path(scratch)) if args.ref else ROOT
            release = build(args.out, root=root, version=args.version, date=args.date,
                            vendor=not args.no_vendor, vendor_cache=args.vendor_cache)
    except BuildError as exc:
        print(f"release build failed: {exc}", file=sys.stderr)
        return 1
    size = release.zip_path.stat().st_size
    print(f"{release.zip_path}  {size} bytes  {len(release.files)} files  sha256 {release.sha256}")
    print(f"{release.index_path}  version {release.version}  date {release.date}")
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
