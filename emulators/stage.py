"""A whole stage: emulated Stash and Plex with one library, and the plugin run as Stash runs it.

End-to-end tests, the demo and the benchmarks all need the same set-up: a generated Stash
library, its files visible to Plex under another prefix (so path mapping is always on the
path), the plugin's settings saved in Stash, and a `StashHost` pointed at both. Building it
in one place keeps them from drifting apart.

The plugin's data folder is explicit (`data_dir`) so tests can open the queue beside the
plugin; background workers the plugin starts are asked to hand over and waited for on close,
so no stray process outlives a stage.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from emulators.host import RunResult, StashHost
from emulators.plex_server import PlexEmulator
from emulators.stash_library import StashLibrary, generate_library
from emulators.stash_server import StashEmulator

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_ID = "Stash2Plex"
STASH_ROOT = "/data/stash"
PLEX_ROOT = "/media/stash"
PATH_MAP = f"{STASH_ROOT}=>{PLEX_ROOT}"


@dataclass(frozen=True)
class Network:
    """Seconds each emulator waits before answering any request: the round trip between the
    plugin and that server. Loopback has none; a NAS, a Docker bridge or Plex on another
    host costs a few milliseconds per request, which a plugin pays once per request it
    waits for."""

    plex: float = 0.0
    stash: float = 0.0


LOOPBACK = Network()
#: The network the benchmarks model: Plex on another host, Stash nearer.
MODELLED_NETWORK = Network(plex=0.005, stash=0.002)


def plex_path(stash_path: str) -> str:
    """Where Plex sees a Stash file on this stage."""
    return PLEX_ROOT + stash_path[len(STASH_ROOT):] if stash_path.startswith(STASH_ROOT) else stash_path


@dataclass
class Stage:
    stash: StashEmulator
    plex: PlexEmulator
    host: StashHost
    data_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def library(self) -> StashLibrary:
        return self.stash.library

    # --- Plex's view of the files -------------------------------------------------------

    def scene_files(self, scene_ids: Iterable[int] | None = None) -> list[str]:
        ids = self.library.sorted_ids() if scene_ids is None else list(scene_ids)
        return [plex_path(f.path) for sid in ids for f in self.library.scenes[sid].files[:1]]

    def _first_files(self, scene_ids: Iterable[int] | None) -> list[tuple[str, dict[str, int]]]:
        """(Plex path, size and duration) of each scene's first file: Plex reads the same
        file Stash does, so its Part has the same size and (in ms) the same duration."""
        ids = self.library.sorted_ids() if scene_ids is None else list(scene_ids)
        out = []
        for sid in ids:
            for f in self.library.scenes[sid].files[:1]:
                out.append((plex_path(f.path), {"size": int(f.size), "duration_ms": int(f.duration * 1000)}))
        return out

    def scan_into_plex(self, scene_ids: Iterable[int] | None = None) -> None:
        """Plex has scanned the first file of each scene: a bare item, titled by file name."""
        for path, media in self._first_files(scene_ids):
            if self.plex.item_by_file(path) is None:
                self.plex.add_item(path, **media)

    def pend_in_plex(self, scene_ids: Iterable[int] | None = None) -> None:
        """The files are on Plex's disk but Plex has not scanned them yet."""
        for path, media in self._first_files(scene_ids):
            self.plex.add_pending(path, **media)

    def plex_item(self, scene_id: int) -> Any:
        """The Plex item of a scene's first file, or None."""
        (path,) = self.scene_files([scene_id])
        return self.plex.item_by_file(path)

    # --- plugin settings and runs ---------------------------------------------------------

    def configure(self, **values: Any) -> None:
        """Save plugin settings in Stash, as the user would on the plugin's settings page."""
        self.settings.update(values)
        self.stash.set_plugin_settings(PLUGIN_ID, dict(self.settings))

    def hook(self, scene_id: int, trigger: str = "Scene.Update.Post") -> RunResult:
        results = self.host.run_hook(trigger, scene_id)
        if len(results) != 1:
            raise AssertionError(f"{trigger} ran {len(results)} hooks, expected 1")
        return results[0]

    def task(self, mode: str, args: dict[str, Any] | None = None, **kwargs: Any) -> RunResult:
        return self.host.run_task(mode, args, **kwargs)

    # --- the background worker ------------------------------------------------------------

    def worker_running(self) -> bool:
        from sync_queue.lock import ProcessorLock

        return ProcessorLock(self.data_dir).is_held_elsewhere()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0, poll: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"stage: condition not met within {timeout} s")
            time.sleep(poll)

    def wait_for_worker(self, timeout: float = 30.0) -> None:
        """Wait until a worker spawned by a hook has started and finished.

        A worker removes the spawn stamp once it holds the lock, so "stamp gone and lock
        free" means it ran and let go; a worker that never starts leaves the stamp and
        this times out instead of passing.
        """
        from worker.launch import SPAWN_STAMP

        spawned = self.data_dir / SPAWN_STAMP
        self.wait_until(lambda: not spawned.exists() and not self.worker_running(), timeout)

    def worker_pids(self) -> list[int]:
        """Processes running our entrypoint in this stage's data folder: the background workers.

        A detached worker's working directory is the data folder (see `worker.launch`), which
        tells it from hook and task runs (their cwd is the host's) without any pid file.
        Linux only (/proc); elsewhere the list is empty.
        """
        return _entrypoint_pids(self.data_dir)

    def lock_holder(self) -> int | None:
        """The pid holding the processor lock (an flock on `processor.lock`), from /proc/locks.

        The pid is the one that took the lock; with no fork after that, it is the worker or
        task doing the processing. None when the lock is free (or not on Linux).
        """
        from sync_queue.lock import LOCK_FILE

        try:
            inode = (self.data_dir / LOCK_FILE).stat().st_ino
            table = Path("/proc/locks").read_text()
        except OSError:
            return None
        for line in table.splitlines():
            parts = line.split()
            # "1: FLOCK  ADVISORY  WRITE 12371 fe:00:2156793 0 EOF"; a waiter's line has "->"
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[3] == "WRITE" and parts[5].split(":")[-1] == str(inode):
                return int(parts[4])
        return None

    def run_pids(self) -> list[int]:
        """Hook and task processes the host is running right now (their cwd is the host's)."""
        assert self.host.workdir is not None
        return _entrypoint_pids(Path(self.host.workdir))

    def age(self, seconds: float) -> None:
        """Let `seconds` pass for the plugin's stored schedule: due times and the breaker move
        earlier by that much, as if the clock had run on. The plugin runs on the real clock in
        its own processes, so this is how a test skips a 30 s backoff without waiting for it.
        Done under the processor lock (a sleeping worker hands over, as for any task)."""
        from sync_queue.db import connect, write_txn
        from sync_queue.state import BREAKER, StateStore
        from worker.breaker import Breaker
        from worker.handover import processor
        from worker.launch import WAKE_FILE, stamp

        def earlier(text: str | None) -> str | None:
            if not text:
                return text
            b = Breaker.load(text)
            return replace(b, **{k: getattr(b, k) - seconds for k in ("opened_at", "open_until", "probe_granted_at")
                                 if getattr(b, k) is not None}).to_json()

        with processor(self.data_dir, timeout=15.0):
            conn = connect(self.data_dir)
            try:
                with write_txn(conn) as txn:
                    txn.execute("UPDATE schedule SET next_retry_at = next_retry_at - ?", (seconds,))
            finally:
                conn.close()
            with StateStore(self.data_dir) as state:
                state.update(BREAKER, earlier)
        stamp(self.data_dir / WAKE_FILE, time.time())

    def stop_workers(self, timeout: float = 15.0) -> None:
        """Ask any background worker to hand over, and wait until it let go of the lock."""
        from sync_queue.lock import ProcessorLock
        from worker.handover import processor

        if not ProcessorLock(self.data_dir).is_held_elsewhere():
            return
        with processor(self.data_dir, timeout=timeout):
            pass


def _entrypoint_pids(cwd: Path) -> list[int]:
    """A child the plugin forks to run a command (plexapi's import asks `uname -p`) shows the
    plugin's command line and folder until it execs: it is not counted as a second plugin."""
    found: dict[int, int] = {}
    want = str(Path(cwd).resolve())
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            where = os.readlink(entry / "cwd")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not ours to look at
            continue
        if where == want and any(arg.endswith(b"Stash2Plex.py") for arg in cmdline):
            found[int(entry.name)] = parent
    return sorted(pid for pid, parent in found.items() if parent not in found)


@contextmanager
def stage(n: int = 20, seed: int = 0, *, library: StashLibrary | None = None, scanned: bool = True,
          work_dir: Path | None = None, plugin_dir: Path = ROOT, python: str = sys.executable,
          settings: dict[str, Any] | None = None, stash_options: dict[str, Any] | None = None,
          plex_options: dict[str, Any] | None = None, network: Network = LOOPBACK,
          on_result: Callable[[RunResult], None] | None = None) -> Iterator[Stage]:
    """Both emulators with a library of `n` generated scenes (or `library`), plugin configured.

    `scanned`: every scene's first file is already a (bare) Plex item; otherwise Plex knows
    nothing yet and the caller decides (`scan_into_plex`, `pend_in_plex`). `network`: the
    delay each emulator adds to every request.
    """
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="s2p-stage-"))
    stash_dir = work / "stash-config"
    data_dir = stash_dir / "plugin_data" / PLUGIN_ID
    data_dir.mkdir(parents=True, exist_ok=True)
    lib = library if library is not None else generate_library(n, seed=seed, stash_root=STASH_ROOT)
    with StashEmulator(lib, latency=network.stash, **(stash_options or {})) as stash, \
            PlexEmulator(latency=network.plex, **(plex_options or {})) as plex:
        host = StashHost(plugin_dir=plugin_dir, connection=stash.connection(), stash_dir=stash_dir,
                         cookie_factory=stash.session_cookie, python=python,
                         env={"STASH2PLEX_DATA_DIR": str(data_dir)}, workdir=work / "cwd",
                         on_result=on_result)
        (work / "cwd").mkdir(exist_ok=True)
        st = Stage(stash=stash, plex=plex, host=host, data_dir=data_dir)
        st.configure(plex_url=plex.url, plex_token=plex.token, path_map=PATH_MAP, **(settings or {}))
        if scanned:
            st.scan_into_plex()
        try:
            yield st
        finally:
            try:
                st.stop_workers()
            except Exception as exc:  # a stuck worker must not hide the test's own failure
                print(f"stage: background worker did not stop: {exc}", file=sys.stderr)
