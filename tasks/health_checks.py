"""Health Check's judgement: facts about the set-up in, one OK/WARN/FAIL line per part out.

Pure: `tasks.health` gathers the facts (all the I/O) and these functions judge them, so the
tests feed facts directly. Kept apart so every rule about what is OK can be read, and
tested, without a server in sight.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from base.clock import absolute_utc, relative
from base.errors import Stash2PlexError
from base.settings import SCHEMA_BY_NAME, WHERE_TO_SET
from watch.status import WatchFacts, describe_last

#: Stash scenes whose first file is looked up in Plex to test the path mapping.
SAMPLE = 5


class Level(str, Enum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    text: str
    fix: str = ""  # what to do, for WARN and FAIL

    def line(self) -> str:
        return f"[{self.level.value}] {self.name}: {self.text}" + (f" \u2192 {self.fix}" if self.fix else "")

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "level": self.level.value, "text": self.text, "fix": self.fix}


class HealthCheckFailed(Stash2PlexError):
    """At least one check is FAIL: the task fails, so Stash shows it did."""


# --- facts: plain data, gathered at the edge -----------------------------------------------


@dataclass(frozen=True)
class StashFacts:
    url: str
    version: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class PlexFacts:
    url: str
    error_kind: str | None = None  # "auth", "down", "config", "other", "not_configured", "not_checked"
    error: str | None = None
    cert_names: tuple[str, ...] = ()  # names on a certificate that did not verify
    machine_id: str | None = None  # Plex's machineIdentifier from /identity
    name: str | None = None
    version: str | None = None
    movie_sections: tuple[str, ...] = ()  # every movie library Plex has
    wanted: tuple[str, ...] = ()  # plex_library as set (empty: all)


@dataclass(frozen=True)
class SampleFacts:
    """The path-map test on the first file of a few Stash scenes."""

    sampled: int = 0  # files looked up
    prefix_hits: int = 0  # of those, files path_map changes (under one of its Stash prefixes)
    found: int = 0  # files a Plex item holds at exactly the mapped path
    by_name: int = 0  # files found only by the file-name fallback (same name, size, duration)
    ambiguous: int = 0  # several Plex items share the file name
    missing: tuple[tuple[str, str], ...] = ()  # (Stash path, Plex path tried), a few, not found by path
    path_map_set: bool = False
    error: str | None = None


@dataclass(frozen=True)
class DataFacts:
    path: str
    exists: bool = False
    writable: bool = True
    schema: int | None = None
    expected: int = 0
    db_bytes: int = 0
    error: str | None = None


@dataclass(frozen=True)
class QueueFacts:
    due: int = 0
    deferred: int = 0
    next_due: float | None = None
    in_flight: int = 0
    inbox: int = 0
    synced: int = 0
    dead_letters: tuple[tuple[str, int], ...] = ()  # (error class, count)
    breaker: str = "closed"
    breaker_until: float | None = None
    halted: bool = False
    last_reconcile: float | None = None
    #: The collections we own by kind, plus "due" and "failed" (`sync_queue.collections.counts`).
    collections: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Facts:
    stash: StashFacts
    missing_settings: tuple[str, ...] = ()
    plex: PlexFacts = field(default_factory=lambda: PlexFacts(url=""))
    sample: SampleFacts = field(default_factory=SampleFacts)
    data: DataFacts = field(default_factory=lambda: DataFacts(path=""))
    queue: QueueFacts | None = None
    worker_running: bool = False
    reconcile_interval: float | None = None
    enabled: bool = True
    packages: tuple[tuple[str, str | None], ...] = ()  # (PyPI name, version or None: missing)
    specs: Mapping[str, str] = field(default_factory=dict)  # PyPI name (lower) -> requirements.txt line
    install_hint: str = ""
    python: str = ""
    watch: WatchFacts | None = None


# --- pure: facts to lines --------------------------------------------------------------------


def _ago(seconds: float) -> str:
    text = relative(seconds)
    return "just now" if text == "now" else text.removeprefix("in ") + " ago"


def check_stash(f: StashFacts) -> Check:
    if f.error and f.version:
        return Check("Stash", Level.FAIL, f"reachable at {f.url}, version {f.version}, but {f.error}",
                     "run the task from Stash itself (it passes the plugin its credentials)")
    if f.error:
        text = f.error if f.url in f.error else f"not reachable at {f.url} ({f.error})"
        return Check("Stash", Level.FAIL, text, "check that Stash is running and run the task from Stash itself")
    return Check("Stash", Level.OK, f"reachable at {f.url}, version {f.version or 'unknown'}")


def check_settings(missing: Sequence[str], enabled: bool, read: bool = True) -> Check:
    if not read:
        return Check("Settings", Level.WARN, "not checked (settings are read from Stash)")
    if missing:
        names = [f"'{SCHEMA_BY_NAME[n].display_name}' ({n})" if n in SCHEMA_BY_NAME else n for n in missing]
        return Check("Settings", Level.FAIL, f"{', '.join(names)} not set", f"set {' and '.join(names)} in {WHERE_TO_SET}")
    if not enabled:
        return Check("Settings", Level.WARN, "plugin disabled (setting 'enabled' is off): nothing is sent to Plex",
                     f"turn 'Enabled' on in {WHERE_TO_SET}")
    return Check("Settings", Level.OK, "Plex URL and token set")


_PLEX_DIRECT = re.compile(r"^\*\.(?P<hash>[0-9a-f]+)\.plex\.direct$", re.IGNORECASE)


def plex_direct_url(url: str, cert_names: Sequence[str]) -> str | None:
    """The address a plex.direct certificate is valid for, when Plex was reached by IP: Plex's
    certificate names `*.<hash>.plex.direct`, and `<a-b-c-d>.<hash>.plex.direct` resolves to
    the IP a-b-c-d (what plex.tv lists for the server). None when that does not apply."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        ip = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return None
    found = next((m for m in map(_PLEX_DIRECT.match, cert_names) if m), None)
    if found is None:
        return None
    dashed = str(ip).replace(".", "-").replace(":", "-")
    return f"https://{dashed}.{found.group('hash')}.plex.direct:{parts.port or 32400}{parts.path.rstrip('/')}"


def _setup_fix(f: PlexFacts) -> str:
    direct = plex_direct_url(f.url, f.cert_names)
    if direct:
        server = f" (server {f.machine_id})" if f.machine_id else ""
        return (f"set 'Plex URL' to {direct}: the address Plex's plex.direct certificate is valid for{server}, "
                "which resolves to the same IP")
    if f.cert_names:
        return (f"the certificate is for {', '.join(f.cert_names)}: use that name in 'Plex URL', trust its CA with "
                "'Plex CA file', or turn 'Verify Plex certificate' off")
    return "change the setting the message names, then run Health Check again"


def check_plex(f: PlexFacts) -> list[Check]:
    """Reachable, token, libraries: three lines, since each has its own fix."""
    if f.error_kind in ("not_configured", "not_checked"):
        why = f.error or "not checked"
        return [Check("Plex", Level.WARN, why), Check("Plex token", Level.WARN, why),
                Check("Plex libraries", Level.WARN, why)]
    if f.error_kind == "auth":
        return [Check("Plex", Level.OK, f"reachable at {f.url}"),
                Check("Plex token", Level.FAIL, "refused by Plex (401)",
                      f"set a valid X-Plex-Token as 'Plex token' in {WHERE_TO_SET}"),
                Check("Plex libraries", Level.WARN, "not checked (the token was refused)")]
    if f.error_kind == "config":
        return [Check("Plex", Level.FAIL, f.error or f"not usable at {f.url}", _setup_fix(f)),
                Check("Plex token", Level.WARN, "not checked (Plex not reachable as configured)"),
                Check("Plex libraries", Level.WARN, "not checked (Plex not reachable as configured)")]
    if f.error_kind:
        fix = ("check that Plex is running and that this Stash can reach that address "
               "(between Docker containers use the container name, not localhost)")
        said = (f.error or "").removeprefix(f"Plex at {f.url} ")  # the address is said once
        text = f"not reachable at {f.url}" + ((f": {said}" if said != f.error else f" ({f.error})") if f.error else "")
        return [Check("Plex", Level.FAIL, text, fix),
                Check("Plex token", Level.WARN, "not checked (Plex not reachable)"),
                Check("Plex libraries", Level.WARN, "not checked (Plex not reachable)")]
    out = [Check("Plex", Level.OK, f"reachable at {f.url}: \"{f.name or 'unnamed'}\", version {f.version or 'unknown'}"),
           Check("Plex token", Level.OK, "accepted")]
    have = {s.casefold(): s for s in f.movie_sections}
    missing = [w for w in f.wanted if w.casefold() not in have]
    if missing:
        out.append(Check("Plex libraries", Level.FAIL,
                         f"no movie library named {', '.join(missing)} (Plex has: {', '.join(f.movie_sections) or 'none'})",
                         f"fix 'Plex libraries' in {WHERE_TO_SET}"))
    elif not f.movie_sections:
        out.append(Check("Plex libraries", Level.FAIL, "Plex has no movie library",
                         "add a Movies library in Plex holding your Stash files"))
    else:
        used = [have[w.casefold()] for w in f.wanted] if f.wanted else list(f.movie_sections)
        how = "as set in 'Plex libraries'" if f.wanted else "every movie library, 'Plex libraries' is empty"
        out.append(Check("Plex libraries", Level.OK, f"using {', '.join(used)} ({how})"))
    return out


def check_sample(f: SampleFacts, plex_ok: bool) -> Check:
    """Found by the mapped path is the only proof path_map is right: the file-name fallback
    finds an item whatever the mapping says, so it counts as a warning, not a success."""
    name = "Path mapping"
    if not plex_ok:
        return Check(name, Level.WARN, "not checked (Plex not usable, see above)")
    if f.error:
        return Check(name, Level.WARN, f"not checked ({f.error})")
    if f.sampled == 0:
        return Check(name, Level.OK, "no Stash scene with a file to sample yet")
    counted = f"{f.found} of {f.sampled} sampled Stash files map to a Plex item by path"
    others = [f"{n} {what}" for n, what in ((f.by_name, "found by file name only"),
                                             (f.ambiguous, "ambiguous by file name"),
                                             (f.sampled - f.found - f.by_name - f.ambiguous, "not in Plex")) if n]
    if others:
        counted += " (" + ", ".join(others) + ")"
    if f.missing:
        stash_path, plex_path = f.missing[0]
        counted += f"; e.g. {stash_path} was looked for as {plex_path}"
    where = f"'Path mapping' in {WHERE_TO_SET}"
    if f.path_map_set and f.prefix_hits == 0:
        return Check(name, Level.WARN, f"path_map maps nothing: no sampled Stash file is under one of its Stash prefixes; {counted}",
                     f"set {where} as STASH_PREFIX=>PLEX_PREFIX with the folder as Stash shows it")
    if f.found == f.sampled:
        return Check(name, Level.OK, counted)
    if not f.path_map_set and f.found == 0:
        return Check(name, Level.WARN, f"{counted}; no path_map is set",
                     f"if Plex sees the files under another folder, set {where} as STASH_PREFIX=>PLEX_PREFIX")
    return Check(name, Level.WARN, counted,
                 f"check {where} (the Plex side as Plex shows the folder) and that Plex has scanned these files")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def check_data(f: DataFacts) -> Check:
    name = "Data folder"
    if f.error:
        return Check(name, Level.FAIL, f"{f.path}: {f.error}", "check the folder's permissions and free space")
    if not f.writable:
        return Check(name, Level.FAIL, f"{f.path} is not writable", "give the user Stash runs as write access to it")
    if not f.exists:
        return Check(name, Level.OK, f"{f.path} (no database yet: created by the first sync)")
    if f.schema is not None and f.schema > f.expected:
        return Check(name, Level.FAIL, f"{f.path}: database schema {f.schema} is newer than this version understands ({f.expected})",
                     "install the newer Stash2Plex again (the database was written by it)")
    text = f"{f.path}, schema {f.schema} of {f.expected}, database {_size(f.db_bytes)}"
    if f.schema is not None and f.schema < f.expected:
        return Check(name, Level.OK, text + " (migrated on the next sync)")
    return Check(name, Level.OK, text)


def check_queue(q: QueueFacts | None, worker_running: bool, now: float) -> list[Check]:
    if q is None:
        return [Check("Queue", Level.OK, "empty (no database yet)"), Check("Plex circuit", Level.OK, "closed"),
                Check("Worker", Level.OK, "running" if worker_running else "not running (nothing to do)")]
    parts = [f"{q.due} due", f"{q.deferred} deferred"]
    if q.deferred and q.next_due is not None:
        parts[-1] += f" (next {relative(q.next_due - now)}, {absolute_utc(q.next_due)})"
    parts += [f"{q.in_flight} in flight", f"{q.inbox} new events", f"{q.synced} scenes synced"]
    dlq = sum(n for _, n in q.dead_letters)
    out = []
    text = ", ".join(parts)
    if dlq:
        by = ", ".join(f"{cls} {n}" for cls, n in q.dead_letters)
        out.append(Check("Queue", Level.WARN, f"{text}; {dlq} dead letters ({by})",
                         "see Queue Status for why, then Retry Dead Letters once it is fixed"))
    else:
        out.append(Check("Queue", Level.OK, text + ", no dead letters"))
    if q.halted:
        out.append(Check("Halt", Level.WARN, "processing is halted: Plex refused the token earlier",
                         "fix the token if needed, then run Process Queue"))
    if q.breaker == "closed":
        out.append(Check("Plex circuit", Level.OK, "closed"))
    else:
        until = f" until {absolute_utc(q.breaker_until)}" if q.breaker_until else ""
        out.append(Check("Plex circuit", Level.WARN, f"{q.breaker}{until}: Plex failed repeatedly, requests are paused",
                         "it retries by itself; Process Queue tries again now"))
    waiting = q.due + q.inbox
    if worker_running:
        out.append(Check("Worker", Level.OK, "running"))
    elif waiting and not q.halted:
        out.append(Check("Worker", Level.WARN, f"not running, with {waiting} jobs or events waiting",
                         "run Process Queue (a scene update starts the worker too)"))
    else:
        out.append(Check("Worker", Level.OK, "not running (nothing is due)"))
    return out


def collection_words(counts: dict[str, int]) -> str:
    """'22 collections of ours (20 group, 2 studio), 0 due', as both reports say it."""
    kinds = [(k, n) for k, n in sorted(counts.items()) if k not in ("due", "failed") and n]
    total = sum(n for _, n in kinds)
    text = f"{total} collections of ours"
    if kinds:
        text += " (" + ", ".join(f"{n} {k}" for k, n in kinds) + ")"
    return text + f", {counts.get('due', 0)} due" + (f", {counts['failed']} failed" if counts.get("failed") else "")


def check_collections(q: QueueFacts | None) -> list[Check]:
    """Only once there is a collection of ours: a library without any gets no line."""
    counts = dict(q.collections) if q else {}
    if not any(n for k, n in counts.items() if k not in ("due", "failed")):
        return []
    if counts.get("failed"):
        return [Check("Collections", Level.WARN, collection_words(counts),
                      "Plex refused some collection writes: see Queue Status for why; the next change retries")]
    return [Check("Collections", Level.OK, collection_words(counts))]


def check_reconcile(last: float | None, interval: float | None, now: float) -> Check:
    name = "Reconcile"
    every = {3600.0: "hourly", 86400.0: "daily", 604800.0: "weekly"}.get(interval or 0.0, "never")
    when = f"last full reconcile {_ago(now - last)} ({absolute_utc(last)})" if last else "no full reconcile yet"
    if interval and last and now - last > 2 * interval + 3600:
        return Check(name, Level.WARN, f"{when}, auto-reconcile {every} is overdue",
                     "the background worker runs it after a drain; run Reconcile All once")
    return Check(name, Level.OK, f"{when}; auto-reconcile {every}")


def check_watch_history(f: WatchFacts, interval: float | None, now: float) -> Check:
    """Off is fine; on, the last import is shown with its cursor, and plays that found no
    Stash scene, or an import long overdue, are worth a look."""
    name = "Watch history"
    if not f.enabled:
        return Check(name, Level.OK, "import off (setting 'Import Plex watch history')")
    if f.error:
        return Check(name, Level.WARN, f"last import unreadable ({f.error})", "run Import Plex Watch History")
    text = describe_last(f, absolute_utc)
    if f.last_at is None:
        return Check(name, Level.OK, f"on; {text}", "")
    unmatched = int(f.last_run.get("no_scene", 0) or 0)
    if unmatched:
        return Check(name, Level.WARN, text, "plays of Plex items no Stash scene matches wait: check the path "
                     "mapping, then run Sync All; the next import brings them in")
    if interval and now - f.last_at > 2 * interval + 3600:
        return Check(name, Level.WARN, f"{text}; overdue", "run Import Plex Watch History")
    return Check(name, Level.OK, text)


def _release(text: str) -> tuple[int, ...]:
    """The leading numeric release of a version ("4.18.3", "2.32.0.post1" -> (2, 32, 0))."""
    out = []
    for part in text.split("."):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        out.append(int(digits.group()))
        if digits.group() != part:
            break
    return tuple(out)


def within(version: str, requirement: str) -> bool | None:
    """Does `version` meet the ranges of a requirements.txt line ("plexapi>=4.18.3,<4.19")?
    None when the line says nothing we can compare. Release numbers only: enough to tell a
    version outside the tested range, which is all the report needs."""
    have = _release(version)
    clauses = re.findall(r"(>=|<=|==|!=|<|>)\s*([0-9][0-9.]*)", requirement)
    if not have or not clauses:
        return None
    for op, bound in clauses:
        want = _release(bound)
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        ok = {">=": a >= b, "<=": a <= b, "==": a == b, "!=": a != b, "<": a < b, ">": a > b}[op]
        if not ok:
            return False
    return True


def check_packages(packages: Sequence[tuple[str, str | None]], install_hint: str, python: str,
                   specs: Mapping[str, str] | None = None) -> Check:
    """Missing is FAIL (nothing works without it); outside the tested range is WARN."""
    specs = specs or {}
    missing = [name for name, version in packages if version is None]
    listed = ", ".join(f"{name} {version or 'MISSING'}" for name, version in packages)
    if missing:
        return Check("Dependencies", Level.FAIL, f"Python {python}: {listed}", install_hint or "install the missing packages")
    outside = [f"{name} {version} (tested: {specs[name.lower()]})" for name, version in packages
               if version and name.lower() in specs and within(version, specs[name.lower()]) is False]
    if outside:
        return Check("Dependencies", Level.WARN, f"Python {python}: {listed}; outside the tested range: {', '.join(outside)}",
                     "if something misbehaves, install the tested versions from requirements.txt")
    return Check("Dependencies", Level.OK, f"Python {python}: {listed}")


def assess(facts: Facts, now: float) -> list[Check]:
    """Every line of the report, in the order a person fixes things."""
    plex = check_plex(facts.plex)
    plex_ok = all(c.level is Level.OK for c in plex)
    return [
        check_stash(facts.stash),
        check_settings(facts.missing_settings, facts.enabled, read=not facts.stash.error),
        *plex,
        check_sample(facts.sample, plex_ok),
        check_data(facts.data),
        *check_queue(facts.queue, facts.worker_running, now),
        *check_collections(facts.queue),
        check_reconcile(facts.queue.last_reconcile if facts.queue else None, facts.reconcile_interval, now),
        *([check_watch_history(facts.watch, facts.reconcile_interval, now)] if facts.watch else []),
        check_packages(facts.packages, facts.install_hint, facts.python, facts.specs),
    ]


def first_fix(checks: Sequence[Check]) -> str | None:
    """The one thing to fix first, or None when nothing is FAIL."""
    for check in checks:
        if check.level is Level.FAIL:
            return f"Health check failed: {check.name}: {check.text}. Fix: {check.fix}."
    return None


def report_lines(checks: Sequence[Check]) -> list[str]:
    counts = {lvl: sum(c.level is lvl for c in checks) for lvl in Level}
    head = (f"Stash2Plex health check: {counts[Level.OK]} OK, {counts[Level.WARN]} WARN, "
            f"{counts[Level.FAIL]} FAIL")
    return [head] + [c.line() for c in checks]
