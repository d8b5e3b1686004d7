"""Connections as users run them, end to end: Plex over HTTPS with a certificate made at test
time, a plex.direct certificate reached by IP, verification off, a path prefix behind a
reverse proxy, and each way a connection fails (refused, timed out, wrong scheme, a proxy's
502), said once with the address and the cause.

Every run goes through the Stash host against the emulators; every connection is to
127.0.0.1 (a certificate carries the plex.direct name, nothing resolves it). REQUESTS_CA_BUNDLE
is set for the plugin in every test here, so the certificate settings are shown to win over it.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from emulators.proxy import ReverseProxy, silent_port
from emulators.stage import Stage, stage
from emulators.tls import NGINX_PLAIN_HTTP, PLEX_HASH, issue, plex_direct
from tests.e2e_worker_support import (
    QUIET,
    audited,
    counts,
    ledger_count,
    queue_of,
    stored_breaker,
    summary_of,
    synced,
    worker_log,
)
from tests.secret_audit import AUDIT

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

N = 4
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def tls_stage(tmp_path: Path, certs, settings: dict | None = None, n: int = N, **plex: object):
    st = stage(n, seed=161, work_dir=tmp_path, settings={**QUIET, **(settings or {})},
               plex_options={"tls": certs, **plex}, on_result=audited("connections"))
    return st


def with_ca_bundle(st: Stage) -> None:
    """As on machines that set it: requests would let it override a Session's verify."""
    bundle = SYSTEM_BUNDLE if Path(SYSTEM_BUNDLE).exists() else str(st.data_dir / "empty.pem")
    Path(bundle).touch(exist_ok=True)
    st.host.env["REQUESTS_CA_BUNDLE"] = bundle


def jobs_kept(st: Stage, n: int = N) -> None:
    """Every scene still has its job, none used an attempt, none dead-lettered."""
    with queue_of(st) as queue:
        jobs = [queue.report.job_for_scene(sid) for sid in st.library.sorted_ids()]
    c = counts(st)
    assert c.dlq == 0 and all(j is not None and j.attempts == 0 for j in jobs), jobs
    assert len(jobs) == n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- certificates ---------------------------------------------------------------------------


@pytest.mark.slow
def test_verify_on_with_the_right_ca_file_syncs(tmp_path: Path) -> None:
    certs = issue(tmp_path / "certs", ("127.0.0.1",), self_signed=True)
    with tls_stage(tmp_path, certs, {"plex_ca_file": str(certs.ca)}) as st:
        with_ca_bundle(st)
        assert st.plex.url.startswith("https://")
        summary = summary_of(st.task("all"))
        assert summary["synced"] == N
        assert all(synced(st, sid) for sid in st.library.sorted_ids())


@pytest.mark.slow
def test_without_the_ca_file_a_self_signed_plex_fails_the_task_naming_the_fix(tmp_path: Path) -> None:
    certs = issue(tmp_path / "certs", ("127.0.0.1",), self_signed=True)
    with tls_stage(tmp_path, certs) as st:
        with_ca_bundle(st)
        result = st.task("all")
        assert result.error is not None and "self-signed certificate" in result.error, result.logs
        assert "'Plex CA file'" in result.error and "'Verify Plex certificate'" in result.error
        assert st.plex.count() == 0  # the handshake failed: no request ever reached Plex
        jobs_kept(st)


@pytest.mark.slow
def test_a_plex_direct_certificate_reached_by_ip_names_the_url_to_use_and_keeps_every_job(tmp_path: Path) -> None:
    certs = plex_direct(tmp_path / "certs")
    with tls_stage(tmp_path, certs, {"plex_ca_file": str(certs.ca)}) as st:
        with_ca_bundle(st)
        AUDIT.add_secret(st.plex.token)
        result = st.task("all")
        assert result.error is not None, result.logs
        assert f"Plex at https://127.0.0.1:{st.plex.port} presented a certificate that does not verify" in result.error
        assert "IP address mismatch" in result.error
        jobs_kept(st)

        health = st.task("health_check")
        direct = f"https://127-0-0-1.{PLEX_HASH}.plex.direct:{st.plex.port}"
        line = next(msg for msg in health.lines() if msg.startswith("[FAIL] Plex:"))
        assert f"set 'Plex URL' to {direct}" in line and st.plex.machine_identifier in line, line
        assert health.error is not None and direct in health.error


@pytest.mark.slow
def test_verify_off_syncs_with_one_warning_per_run(tmp_path: Path) -> None:
    certs = plex_direct(tmp_path / "certs")
    with tls_stage(tmp_path, certs, {"plex_verify_certificate": False}) as st:
        with_ca_bundle(st)
        result = st.task("all")
        assert summary_of(result)["synced"] == N
        warnings = [m for m in result.lines("warning") if "'Verify Plex certificate' is off" in m]
        assert len(warnings) == 1, result.logs
        assert "InsecureRequestWarning" not in result.stderr


# --- a path prefix behind a reverse proxy ------------------------------------------------------


@pytest.mark.slow
def test_a_path_prefix_behind_a_proxy_carries_every_request_uploads_and_scans_included(tmp_path: Path) -> None:
    settings = {"sync_poster": True, "sync_background": True, "trigger_plex_scan": True}
    with stage(N, seed=162, work_dir=tmp_path, scanned=False, settings=settings,
               on_result=audited("proxy")) as st, ReverseProxy(st.plex.url, "/plex") as proxy:
        st.pend_in_plex()  # on Plex's disk, not scanned: the sync asks for a partial scan
        st.configure(plex_url=proxy.url)
        first = summary_of(st.task("all"))  # not found yet: a scan of each folder is asked for
        st.stop_workers()
        st.age(700)  # past the not-found backoff
        again = summary_of(st.task("process_queue"))
        assert first["synced"] < N and again["deferred"] == [], (first, again)  # the worker may take some between
        assert all(synced(st, sid) for sid in st.library.sorted_ids())
        assert st.plex.count("GET", re.compile(r"/library/sections/\d+/refresh")) >= 1
        assert st.plex.count("POST", re.compile(r"/library/metadata/\d+/(posters|arts)")) >= N
        assert proxy.seen and all(path.startswith("/plex/") or path == "/plex" for path in proxy.seen)

        # Plex behind the proxy goes away: the proxy answers 502, said as such, and it is an
        # outage (the task succeeds, the jobs wait), not a bad request.
        st.plex.faults.down = True
        for sid in st.library.sorted_ids():
            st.library.update_scene(sid, title=f"Changed {sid}", now=int(time.time()))
            st.hook(sid)
        st.stop_workers()
        result = st.task("process_queue")
        assert result.error is None, result.logs
        warnings = [m for m in result.lines("warning") if "502 Bad Gateway" in m]
        assert len(warnings) == 1 and f"Plex at {proxy.url} is behind a proxy" in warnings[0], result.logs
        jobs_kept(st)


# --- failures said once, with address and cause -------------------------------------------------


@pytest.mark.slow
def test_a_refused_port_is_one_warning_with_address_cause_and_next_try_and_the_task_succeeds(tmp_path: Path) -> None:
    with stage(N, seed=163, work_dir=tmp_path, settings=QUIET, on_result=audited("refused")) as st:
        port = free_port()
        st.configure(plex_url=f"http://127.0.0.1:{port}")
        for sid in st.library.sorted_ids():
            st.hook(sid)
        st.stop_workers()
        result = st.task("process_queue")
        assert result.error is None and not result.lines("error"), result.logs
        (warning,) = [m for m in result.lines("warning")]
        assert warning.startswith(f"Stash2Plex: Plex at http://127.0.0.1:{port} refused the connection"), warning
        assert "Every job is kept" in warning and "next try" in warning
        jobs_kept(st)


@pytest.mark.slow
def test_connect_timeout_bites_in_seconds(tmp_path: Path) -> None:
    with stage(2, seed=164, work_dir=tmp_path, settings={**QUIET, "connect_timeout": 1},
               on_result=audited("connect timeout")) as st, silent_port() as port:
        st.configure(plex_url=f"http://127.0.0.1:{port}")
        started = time.monotonic()
        result = st.task("all")
        took = time.monotonic() - started
        assert result.error is None, result.logs
        (warning,) = result.lines("warning")
        assert f"Plex at http://127.0.0.1:{port} did not accept a connection in time (1s, 'Connect timeout')" in warning
        assert took < 30, took  # 1 s per connection attempt, not the 5 s default or a hang
        jobs_kept(st, 2)


@pytest.mark.slow
def test_read_timeout_bites_in_seconds_while_plex_holds_the_request(tmp_path: Path) -> None:
    # max_retries 1: the one attempt's failure is final, so the test shows the timeout itself
    # rather than the transient backoff between attempts.
    with stage(1, seed=165, work_dir=tmp_path, settings={**QUIET, "read_timeout": 1, "max_retries": 1},
               on_result=audited("read timeout")) as st:
        with st.plex.faults.holding():  # Plex holds every request open until the task is over
            started = time.monotonic()
            summary = summary_of(st.task("all"))
            took = time.monotonic() - started
        assert summary["dead_lettered"] == {"transient": st.library.sorted_ids()}, summary
        with queue_of(st) as queue:
            (letter,) = queue.dlq.list_all()
        assert f"Plex at {st.plex.url} accepted the request but did not answer in time (1s, 'Read timeout'" in letter.message
        assert took < 30, took  # three 1 s waits (the request and its two quick retries), not 30 s each


@pytest.mark.slow
def test_https_to_a_plain_http_port_fails_the_task_with_the_scheme_to_use(tmp_path: Path) -> None:
    with stage(N, seed=166, work_dir=tmp_path, settings=QUIET, on_result=audited("scheme")) as st:
        wrong = st.plex.url.replace("http://", "https://")
        st.configure(plex_url=wrong)
        result = st.task("all")
        assert result.error is not None
        assert f"Plex at {wrong} speaks plain HTTP on that port, not HTTPS: use http:// in 'Plex URL'" in result.error
        jobs_kept(st)


@pytest.mark.slow
@pytest.mark.parametrize("answer", [None, NGINX_PLAIN_HTTP], ids=["plex closes", "nginx 400"])
def test_http_to_an_https_port_fails_the_task_with_the_scheme_to_use(tmp_path: Path, answer: bytes | None) -> None:
    certs = issue(tmp_path / "certs", ("127.0.0.1",), self_signed=True)
    with tls_stage(tmp_path, certs, plain_http_answer=answer) as st:
        wrong = st.plex.url.replace("https://", "http://")
        st.configure(plex_url=wrong)
        result = st.task("all")
        assert result.error is not None
        assert f"Plex at {wrong} speaks HTTPS on that port, not plain HTTP: use https:// in 'Plex URL'" in result.error
        jobs_kept(st)


# --- Stash over HTTPS ---------------------------------------------------------------------------


@pytest.mark.slow
def test_stash_over_https_with_its_own_stash_crt_is_trusted_exactly(tmp_path: Path) -> None:
    """Stash serves the stash.crt of its config folder, made for a name, while the plugin
    reaches it at 127.0.0.1: trusting exactly that certificate works without a host-name match,
    whatever REQUESTS_CA_BUNDLE says."""
    certs = issue(tmp_path / "stash-config", ("stash.example.org",), stem="stash", self_signed=True)
    with stage(N, seed=167, work_dir=tmp_path, settings={**QUIET, "sync_poster": True},
               stash_options={"tls": certs}, on_result=audited("stash https")) as st:
        with_ca_bundle(st)
        assert st.stash.url.startswith("https://") and st.host.connection["Scheme"] == "https"
        summary = summary_of(st.task("all"))
        assert summary["synced"] == N and all(synced(st, sid) for sid in st.library.sorted_ids())

        (tmp_path / "stash-config" / "stash.crt").write_text(
            issue(tmp_path / "other", ("stash.example.org",), stem="other", self_signed=True).cert.read_text())
        result = st.task("process_queue")  # another certificate than Stash serves: refused
        assert result.error is not None and f"Stash at {st.stash.url}" in result.error, result.logs
        assert "certificate" in result.error


# --- prompt recovery -----------------------------------------------------------------------------

#: Once Plex answers again, the jobs it held go within this many seconds: the probe that finds
#: it is due within that long, and the jobs follow the probe's answer well within it.
RECOVERY_TARGET = 5.0


@pytest.mark.slow
def test_after_a_short_outage_the_background_worker_resumes_within_seconds(tmp_path: Path) -> None:
    """An outage during a drain: the background worker the task leaves probes Plex with one
    cheap request every few seconds and releases every held job when it answers.

    Plex goes away after a number of writes and comes back once the worker's first probe has
    failed, so the outage sits at the same point of the breaker's schedule however slow the
    machine. "Within seconds" is then two facts, each from recorded state rather than a
    stopwatch around a busy machine: the probe that finds Plex back was due within the
    target (the breaker's stored schedule), and the first job follows that probe's answer
    at once (the emulator's own request log)."""
    n = 30
    with stage(n, seed=168, work_dir=tmp_path, settings=QUIET, on_result=audited("recovery")) as st:
        ids = st.library.sorted_ids()
        st.plex.faults.down_after(5)
        result = st.task("all")
        assert result.error is None, result.logs
        assert any("refused the connection" in m for m in result.lines("warning")), result.logs
        assert not all(synced(st, sid) for sid in ids)

        st.wait_until(lambda: stored_breaker(st).trips >= 2, what="the worker's first probe failed")
        scheduled = stored_breaker(st).open_until
        st.plex.faults.down = False
        up_at = time.time()
        # In Plex and recorded: a job's write lands a moment before the worker records it.
        st.wait_until(lambda: all(synced(st, sid) for sid in ids) and ledger_count(st) == n, timeout=90)
        assert scheduled is not None and scheduled - up_at <= RECOVERY_TARGET, (scheduled, up_at)
        after = [r for r in st.plex.requests if r.t >= up_at]
        first_probe = next(r.t for r in after if r.path in ("/identity", "/"))
        first_job = min(r.t for r in after if r.method == "PUT")
        lag = first_job - first_probe
        print(f"recovery: probe due {scheduled - up_at:.2f} s after Plex answered again; "
              f"first job {lag:.2f} s after the probe (from up: {first_job - up_at:.2f} s)")
        assert 0 <= lag <= RECOVERY_TARGET, lag
        probes = [r for r in st.plex.requests if r.t >= up_at and r.path in ("/identity", "/")]
        assert 1 <= len(probes) <= 2  # one cheap probe (plus the root of a connection made anew)
        c = counts(st)
        assert (c.due, c.deferred, c.in_flight, c.dlq) == (0, 0, 0, 0)
        # The worker said the outage once, with its cause, however many probes it sent.
        said = [line for line in worker_log(st).splitlines() if " WARNING " in line]
        assert len(said) <= 1 and all("refused the connection" in line for line in said), said


@pytest.mark.slow
def test_the_background_worker_says_an_outage_once_however_many_probes_fail(tmp_path: Path) -> None:
    with stage(3, seed=169, work_dir=tmp_path, settings=QUIET, on_result=audited("worker outage")) as st:
        ids = st.library.sorted_ids()
        st.plex.faults.down = True
        for sid in ids:
            st.hook(sid)
        st.wait_until(lambda: " WARNING " in worker_log(st))
        # Probes go after 2 s, then 4 s more: wait until at least two have failed (each failed
        # probe opens the breaker again), however late a busy machine runs them.
        st.wait_until(lambda: stored_breaker(st).trips >= 3, what="two failed probes")
        st.plex.faults.down = False
        st.wait_until(lambda: all(synced(st, sid) for sid in ids), timeout=90)
        lines = worker_log(st).splitlines()
        said = [line for line in lines if " WARNING " in line]
        assert len(said) == 1, said
        assert f"Plex at {st.plex.url} refused the connection" in said[0] and "Every job is kept" in said[0]
        assert any("Plex answers again" in line for line in lines)
        assert st.plex.count("GET", re.compile(r"/(identity)?")) >= 1  # the probe that found Plex back


@pytest.mark.slow
def test_reconcile_with_plex_unreachable_warns_once_and_succeeds(tmp_path: Path) -> None:
    with stage(N, seed=170, work_dir=tmp_path, settings=QUIET, on_result=audited("reconcile refused")) as st:
        port = free_port()
        st.configure(plex_url=f"http://127.0.0.1:{port}")
        result = st.task("reconcile_all")
        assert result.error is None and not result.lines("error"), result.logs
        (warning,) = result.lines("warning")
        assert warning.startswith(f"Stash2Plex: Plex at http://127.0.0.1:{port} refused the connection"), warning
        assert "nothing was lost" in warning
