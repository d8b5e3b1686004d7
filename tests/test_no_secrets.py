"""No secret anywhere (issue 19 point 4).

Distinctive secrets are planted where a real install has them: the Plex token (a plugin
setting), Stash's API key (in Stash's config; stashapi fetches it), the session cookie
Stash hands every run, and image and error URLs that carry `apikey=` or `X-Plex-Token=`.
Then the plugin does what it does in a bad week, through the host against both emulators:
hooks and the background worker, Sync All through 5xx, 429 and a dropped Plex, a revoked
token, a scene Plex does not have (a dead letter), Queue Status, Health Check, Dry Run and Reconcile. Every byte it wrote (stdout, Stash's log,
the worker log, the database with its queue and dead letters, every other file in the data
folder) is searched for every secret.
"""

from __future__ import annotations

import re
from pathlib import Path

from emulators.stage import stage
from tests.e2e_worker_support import QUIET
from tests.secret_audit import AUDIT

PLEX_TOKEN = "PlexTok3n-s3cr3t-9f8e7d6c5b4a"
STASH_API_KEY = "StashAp1Key-s3cr3t-0a1b2c3d4e5f"
PASSWORD = "Passw0rd-s3cr3t-7a6b"
#: `apikey=`/`X-Plex-Token=` followed by anything but the mask is a leak, whatever the value.
URL_SECRET = re.compile(r"(?i)(apikey|api_key|x-plex-token)=(?!\*\*\*)[^&\s\"'<>]+")


def everything_written(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file()}


def test_no_secret_reaches_any_log_output_or_stored_message(tmp_path: Path) -> None:
    transcripts: list[tuple[str, str]] = []
    cookies: list[str] = []
    settings = {**QUIET, "sync_poster": True, "debug_logging": True}
    with stage(6, seed=23, work_dir=tmp_path, settings=settings, plex_options={"token": PLEX_TOKEN},
               stash_options={"username": "admin", "password": PASSWORD, "api_key": STASH_API_KEY},
               on_result=lambda r: transcripts.append(("run", r.stdout + r.stderr))) as st:
        mint = st.host.cookie_factory
        assert mint is not None

        def cookie() -> dict | None:
            value = mint()
            if value:
                cookies.append(value["Value"])
            return value

        st.host.cookie_factory = cookie
        secrets = [PLEX_TOKEN, STASH_API_KEY, PASSWORD]
        AUDIT.add_secret(*secrets)
        lib = st.library
        ids = lib.sorted_ids()
        # A scene whose file Plex never scanned: with one attempt allowed it becomes a dead
        # letter at once, its message naming the paths tried.
        lib.add_scene(files=["/data/stash/never/scanned.mp4"], title="Never scanned")
        st.configure(max_retries=1)

        for sid in ids[:2]:
            assert st.hook(sid).error is None
        st.wait_for_worker()
        st.plex.faults.error_burst(2)
        st.plex.faults.rate_limit(1, retry_after=1)
        for name in ("all", "queue_status", "health_check", "dry_run", "reconcile_all"):
            st.task(name)
        st.plex.faults.revoke_token()
        lib.update_scene(ids[3], title="Edited while the token was revoked")
        assert st.hook(ids[3]).error is None
        st.wait_for_worker()
        st.task("process_queue")
        st.task("health_check")
        st.plex.faults.restore_token()
        st.plex.faults.down = True
        st.task("health_check")
        st.plex.faults.down = False
        for name in ("retry_dlq", "process_queue", "queue_status", "dry_run", "health_check"):
            st.task(name)
        st.stop_workers()

        secrets += cookies
        assert cookies, "the runs were given session cookies"
        written = everything_written(st.data_dir)
        assert "stash2plex.db" in written and "worker.log" in written
        db = written["stash2plex.db"] + written.get("stash2plex.db-wal", b"")
        assert b"/media/stash/never/scanned.mp4" in db, "the dead letter with the paths tried was stored"
        leaks = []
        for where, text in transcripts + [(name, data.decode("utf-8", "replace")) for name, data in written.items()]:
            leaks += [f"{where}: {secret[:6]}..." for secret in secrets if secret in text]
            leaks += [f"{where}: {m.group(0)[:24]}..." for m in URL_SECRET.finditer(text)]
        assert leaks == [], leaks
        # The search saw the channels a leak would take: every run's output, the worker's
        # log, the stored dead letter with the request URL Plex refused, the status reports.
        assert len(transcripts) >= 15
        runs = "\n".join(text for _, text in transcripts)
        assert "refused by Plex (401)" in runs and str(st.stash.port) in runs
        assert "dead_letters" in runs or "dead-letter" in runs
        assert b"401" in written["worker.log"]
