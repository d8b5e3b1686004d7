"""Health Check: one line per part of the set-up, OK, WARN or FAIL, readable at a glance.

The task gathers facts first (`gather`, all the I/O, each part guarded so one failure is a
fact about that part, not a crash) and judges them afterwards (`tasks.health_checks.assess`,
pure: the tests feed it facts). It fails in Stash (the task shows as failed) only when a line is FAIL, with
one line saying what to fix first; warnings say what to look at but leave the task green.

Nothing is written: no request that changes Plex (the path sample uses the sync's own
lookup with Plex scans off), no database created or migrated (an absent database is "not
created yet", an old schema is only reported), no job, breaker or halt changed. Secrets
never appear: the token is reported as accepted or refused, never shown.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from base.errors import Stash2PlexError
from tasks.health_checks import (
    SAMPLE,
    DataFacts,
    Facts,
    HealthCheckFailed,
    PlexFacts,
    QueueFacts,
    SampleFacts,
    StashFacts,
    assess,
    first_fix,
    report_lines,
)
from watch.status import read_facts
from worker.runtime import RunContext

# --- I/O: gathering -----------------------------------------------------------------------


def _message(exc: BaseException) -> str:
    return str(exc).rstrip(".") or type(exc).__name__


def gather_stash(ctx: RunContext) -> StashFacts:
    from stash import queries

    url = ctx.stash.url
    try:
        data = ctx.stash.gql(queries.VERSION)
    except Stash2PlexError as exc:
        return StashFacts(url, error=_message(exc))
    return StashFacts(url, version=str((data.get("version") or {}).get("version") or "") or None)


def gather_plex(settings: Any, data_dir: Path) -> tuple[PlexFacts, Any]:
    """Server root (name, version: also proves the token), the library list. Returns the
    facts and a PlexSync for the path sample (None when Plex is not usable)."""
    from base.errors import PlexAuthError, PlexConnectionSetupError, PlexUnavailable
    from plex import xmlread
    from plex.connection import PlexConnection, certificate_names, machine_identifier
    from plex.sync import PlexSync

    url = settings.plex_url
    conn = PlexConnection(url, settings.plex_token, connect_timeout=settings.connect_timeout,
                          read_timeout=settings.read_timeout, data_dir=data_dir, tls=settings.plex_tls)
    try:
        server = conn.server()
        sections = xmlread.sections(conn.query("/library/sections"))
    except PlexAuthError as exc:
        return PlexFacts(url, "auth", _message(exc)), None
    except PlexConnectionSetupError as exc:
        names, machine = (), None
        if url.startswith("https://") and "certificate" in str(exc):
            names = certificate_names(url, settings.connect_timeout)
            machine = machine_identifier(url, settings.connect_timeout)
        return PlexFacts(url, "config", _message(exc), cert_names=names, machine_id=machine), None
    except PlexUnavailable as exc:
        return PlexFacts(url, "down", _message(exc)), None
    except Stash2PlexError as exc:
        return PlexFacts(url, "other", _message(exc)), None
    facts = PlexFacts(url, name=getattr(server, "friendlyName", None), version=getattr(server, "version", None),
                      movie_sections=tuple(s.title for s in sections if s.type == "movie"),
                      wanted=tuple(settings.plex_library))
    quiet = replace(settings, trigger_plex_scan=False)  # a scan request would change Plex

    def no_images(url: str) -> bytes | None:
        return None

    return facts, PlexSync(conn, quiet, no_images)


def gather_sample(ctx: RunContext, plex: Any, settings: Any, size: int = SAMPLE) -> SampleFacts:
    """Look the first file of a few Stash scenes up in Plex through the sync's own lookup."""
    from base.errors import AmbiguousMatch, PlexNotFound
    from plex.pathmap import path_key, to_plex

    pm = settings.path_map
    sampled = prefix_hits = found = by_name = ambiguous = 0
    missing: list[tuple[str, str]] = []
    error = None
    try:
        scenes = []
        for scene in ctx.stash.iter_scenes(page_size=size):
            if scene.files:
                scenes.append(replace(scene, files=scene.files[:1]))
            if len(scenes) >= size:
                break
        for scene in scenes:
            stash_path = scene.files[0].path
            plex_path = to_plex(stash_path, pm)
            sampled += 1
            prefix_hits += plex_path != stash_path
            try:
                state, _ = plex.preview_state(scene, None, time.time())
            except AmbiguousMatch:
                ambiguous += 1
                missing.append((stash_path, plex_path))
                continue
            except PlexNotFound:
                missing.append((stash_path, plex_path))
                continue
            if path_key(plex_path) in {path_key(p) for p in state.files}:
                found += 1
            else:
                by_name += 1
                missing.append((stash_path, plex_path))
    except Stash2PlexError as exc:
        error = _message(exc)
    return SampleFacts(sampled, prefix_hits, found, by_name, ambiguous, tuple(missing[:3]), bool(pm), error)


def gather_data(data_dir: Path) -> tuple[DataFacts, bool]:
    """The folder, the schema and the size, read without creating or migrating anything.
    The second value says whether the queue can be read (database present and current)."""
    from sync_queue.db import db_path
    from sync_queue.schema import SCHEMA_VERSION, current_version

    path = db_path(data_dir)
    writable = os.access(data_dir, os.W_OK)
    if not path.exists():
        return DataFacts(str(data_dir), False, writable, None, SCHEMA_VERSION), False
    try:
        conn = sqlite3.connect(f"file:{path.as_posix()}?mode=ro", uri=True, timeout=5.0)
        try:
            schema = current_version(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return DataFacts(str(data_dir), True, writable, None, SCHEMA_VERSION, error=f"database unreadable ({exc})"), False
    size = sum(p.stat().st_size for p in (path, Path(str(path) + "-wal")) if p.exists())
    return DataFacts(str(data_dir), True, writable, schema, SCHEMA_VERSION, size), schema == SCHEMA_VERSION


def gather_queue(data_dir: Path, now: float) -> QueueFacts:
    from sync_queue.jobs import JobQueue
    from sync_queue.state import BREAKER, HALT, LAST_RECONCILE, StateStore
    from worker.breaker import Breaker

    queue = JobQueue(data_dir)
    state = StateStore(data_dir)
    try:
        counts = queue.report.counts(now)
        soonest = queue.report.deferred(now, limit=1)
        groups = queue.dlq.summary()
        collections = queue.collections.counts()
        breaker = Breaker.load(state.get(BREAKER))
        halt = state.get(HALT)
        last = state.get(LAST_RECONCILE)
    finally:
        state.close()
        queue.close(compact=False)
    try:
        last_at = float(last) if last else None
    except ValueError:
        last_at = None
    return QueueFacts(due=counts.due, deferred=counts.deferred,
                      next_due=soonest[0].next_retry_at if soonest else None, in_flight=counts.in_flight,
                      inbox=counts.inbox, synced=counts.ledger,
                      dead_letters=tuple((g.error_class, g.count) for g in groups),
                      breaker=breaker.state.value, breaker_until=breaker.open_until, halted=bool(halt),
                      last_reconcile=last_at, collections=tuple(sorted(collections.items())))


def gather_packages(plugin_dir: Path) -> tuple[tuple[tuple[str, str | None], ...], dict[str, str], str]:
    """Installed versions of the runtime packages, the tested ranges, the install command."""
    from importlib import metadata

    from base.deps import RUNTIME_PACKAGES, install_command, requirement_specs

    found: list[tuple[str, str | None]] = []
    for pypi in RUNTIME_PACKAGES.values():
        try:
            found.append((pypi, metadata.version(pypi)))
        except metadata.PackageNotFoundError:
            found.append((pypi, None))
    try:
        specs = requirement_specs((plugin_dir / "requirements.txt").read_text(encoding="utf-8"))
    except OSError:
        specs = {}
    missing = [name for name, version in found if version is None]
    hint = "install with: " + install_command(sys.executable, plugin_dir, missing, specs) if missing else ""
    return tuple(found), specs, hint


def _worker_running(data_dir: Path) -> bool:
    """Probing the lock opens its file for writing: in a read-only folder no worker can run."""
    from sync_queue.lock import ProcessorLock

    try:
        return ProcessorLock(data_dir).is_held_elsewhere()
    except OSError:
        return False


def gather(ctx: RunContext, now: float, progress: Callable[[float], None] = lambda f: None) -> Facts:
    """Every fact the report needs; each part's failure becomes a fact about that part."""
    from base.settings import load_settings

    stash = gather_stash(ctx)
    progress(0.1)
    settings = None
    if not stash.error:
        try:
            settings = ctx.settings
        except Stash2PlexError as exc:  # answered the version, then refused the settings query
            stash = replace(stash, error=f"our settings could not be read: {_message(exc)}")
    missing: tuple[str, ...] = ()
    if settings is None:
        settings = load_settings({}, lambda msg: None)
        plex = PlexFacts(url="", error_kind="not_checked", error="not checked (settings are read from Stash)")
        sample = SampleFacts()
    else:
        missing = tuple(n for n in ("plex_url", "plex_token") if not getattr(settings, n))
        if missing:
            plex, sync = PlexFacts(url=settings.plex_url, error_kind="not_configured",
                                   error="not checked (setting missing)"), None
        else:
            from worker.services import warn_unverified

            warn_unverified(settings, ctx.log)
            plex, sync = gather_plex(settings, ctx.data_dir)
        progress(0.4)
        sample = gather_sample(ctx, sync, settings) if sync is not None else SampleFacts()
    progress(0.7)
    data, readable = gather_data(ctx.data_dir)
    queue = None
    if readable:
        try:
            queue = gather_queue(ctx.data_dir, now)
        except (sqlite3.Error, Stash2PlexError) as exc:
            data = replace(data, error=f"queue unreadable ({exc})")
    packages, specs, hint = gather_packages(ctx.entrypoint.parent)
    watch = read_facts(ctx.data_dir, settings.import_watch_history, settings.watch_history_account) \
        if readable else None
    progress(0.9)
    return Facts(stash=stash, missing_settings=missing, plex=plex, sample=sample, data=data, queue=queue,
                 worker_running=data.exists and _worker_running(ctx.data_dir),
                 reconcile_interval=settings.reconcile_seconds, enabled=settings.enabled,
                 packages=packages, specs=specs, install_hint=hint,
                 python=f"{platform.python_version()} ({sys.executable})", watch=watch)


def health_check(ctx: RunContext) -> dict[str, Any]:
    """The task: gather, judge, log one line per check; fail only on a FAIL."""
    now = time.time()
    ctx.log.progress(0.0)
    facts = gather(ctx, now, ctx.log.progress)
    checks = assess(facts, now)
    ctx.log.progress(1.0)
    for line in report_lines(checks):
        ctx.log.info(line)
    problem = first_fix(checks)
    if problem:
        raise HealthCheckFailed(problem)
    return {"ok": True, "checks": [c.to_dict() for c in checks]}
