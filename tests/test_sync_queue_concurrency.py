"""Many processes on one queue, as real processes (issue 4, point 6).

* 200 processes append to the inbox of a database none of them has seen before, all at once:
  every event arrives, no process fails, none prints "database is locked".
* Several processors compete for the queue: the lock lets exactly one take jobs at a time
  (an O_EXCL sentinel file inside the locked region would catch a second one), and every job
  is done exactly once, while hook processes keep appending.
* A SIGKILLed lock holder does not keep the lock, and the jobs it had in flight come back
  exactly once, however many processors race to recover them; opening the queue or recording
  an event in the meantime does not bring them back early.

Each child is ``python -c`` on a small script. Children that must start together block on
one shared pipe (``wait_for_go``) until the parent closes its end, so they all wake at the
same moment, without polling, instead of in spawn order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_queue.inbox import read_inbox
from sync_queue.jobs import JobQueue
from sync_queue.lock import ProcessorLock
from sync_queue.schema import SCHEMA_VERSION
from tests.fixtures_queue import T0, drain, live_scene_counts, raw_conn

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = f"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
def wait_for_go(fd):
    os.read(int(fd), 1)  # blocks until the parent closes the pipe's write end: EOF for all
"""


class Barrier:
    """A pipe whose read end every child inherits; closing the write end releases them all."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()

    def __str__(self) -> str:
        return str(self.read_fd)

    def release(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        self.release()
        os.close(self.read_fd)


def spawn(script: str, *args: object, barrier: Barrier | None = None) -> subprocess.Popen[str]:
    code = PRELUDE + textwrap.dedent(script)
    fds = (barrier.read_fd,) if barrier is not None else ()
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, pass_fds=fds)


def finish(procs: list[subprocess.Popen[str]], timeout: float = 120) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out, err))
    return results


@pytest.fixture
def barrier() -> Iterator[Barrier]:
    b = Barrier()
    yield b
    b.close()


# ---- 200 hook processes at once ----

HOOK = """
from sync_queue.inbox import record_event
data_dir, go, scene = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
wait_for_go(go)
record_event(data_dir, "scene", scene, "Scene.Update.Post", 1700000000.0 + scene)
record_event(data_dir, "scene", scene, "Scene.Create.Post", 1700000000.0 + scene)
record_event(data_dir, "tag", scene, "Tag.Update.Post", 1700000000.0 + scene, payload={"n": scene})
print("ok")
"""

N_HOOKS = 200


@pytest.mark.slow  # 200 interpreters starting on a 2-core machine
def test_two_hundred_processes_append_to_a_new_inbox_at_once_and_lose_nothing(
    tmp_path: Path, barrier: Barrier
) -> None:
    data_dir = tmp_path / "data"  # does not exist yet: the processes race to create it
    procs = [spawn(HOOK, data_dir, barrier, scene, barrier=barrier) for scene in range(1, N_HOOKS + 1)]
    barrier.release()
    results = finish(procs)

    for rc, out, err in results:
        assert (rc, out.strip()) == (0, "ok"), err
        assert err == ""  # nothing at all on stderr, "database is locked" least of all
    with raw_conn(data_dir) as conn:
        events = read_inbox(conn, 10 * N_HOOKS)
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    assert version == [(str(SCHEMA_VERSION),)]  # the schema was created once, by whichever process came first
    got = Counter((e.kind, e.entity_id, e.reason) for e in events)
    expected = Counter()
    for scene in range(1, N_HOOKS + 1):
        expected.update([("scene", scene, "Scene.Update.Post"), ("scene", scene, "Scene.Create.Post"),
                         ("tag", scene, "Tag.Update.Post")])
    assert got == expected
    # Each process's own events are in its order (one connection, one commit after another).
    for scene in range(1, N_HOOKS + 1):
        mine = [e.reason for e in events if e.entity_id == scene]
        assert mine == ["Scene.Update.Post", "Scene.Create.Post", "Tag.Update.Post"]

    with JobQueue(data_dir) as q:
        result = q.ingest(T0)
        assert (result.events, result.created, result.merged) == (3 * N_HOOKS, N_HOOKS, N_HOOKS)
        assert len(result.fanout) == N_HOOKS
        assert q.counts(T0).inbox == 0
    assert live_scene_counts(data_dir) == {scene: 1 for scene in range(1, N_HOOKS + 1)}


# ---- one processor at a time ----

PROCESSOR = """
from sync_queue.jobs import JobQueue
from sync_queue.lock import ProcessorLock
data_dir, go, log_path, done_flag = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
sentinel = data_dir / "inside"
wait_for_go(go)
lock = ProcessorLock(data_dir)
q = JobQueue(data_dir)
taken, overlaps, holds = [], 0, 0
while True:
    lock.acquire(timeout=60)
    holds += 1
    try:
        try:
            fd = os.open(sentinel, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            overlaps += 1
            fd = None
        with open(log_path, "a") as log:
            log.write(f"enter {os.getpid()}\\n")
        q.ingest(1700000000.0)
        for _ in range(3):
            job = q.take_due(1700000000.0)
            if job is None:
                break
            taken.append(job.scene_id)
            time.sleep(0.002)  # a real sync takes a while: widen the window for a second taker
            q.complete(job, 1700000000.0)
        idle = q.counts(1700000000.0)
        with open(log_path, "a") as log:
            log.write(f"exit {os.getpid()}\\n")
        if fd is not None:
            os.close(fd)
            os.unlink(sentinel)
    finally:
        lock.release()
    if os.path.exists(done_flag) and idle.due == 0 and idle.inbox == 0 and idle.in_flight == 0:
        break
    time.sleep(0.06)  # longer than filelock's 50 ms poll: give the others a turn
q.close(compact=False)
print(json.dumps({"taken": taken, "overlaps": overlaps, "holds": holds}))
"""

HOOK_ONCE = """
from sync_queue.inbox import record_event
data_dir, go, scene = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
wait_for_go(go)
record_event(data_dir, "scene", scene, "Scene.Update.Post", 1700000000.0)
"""


@pytest.mark.slow  # 24 interpreters; seconds on an idle machine, more under load
def test_exactly_one_processor_takes_jobs_at_a_time_and_each_job_runs_once(tmp_path: Path, barrier: Barrier) -> None:
    data_dir = tmp_path / "data"
    with JobQueue(data_dir) as q:
        for scene in range(1, 61):
            q.enqueue(scene, "bulk", T0, urgent=False)
    log_path, done_flag = tmp_path / "lock.log", tmp_path / "hooks.done"
    processors = [spawn(PROCESSOR, data_dir, barrier, log_path, done_flag, barrier=barrier) for _ in range(4)]
    hooks = [spawn(HOOK_ONCE, data_dir, barrier, scene, barrier=barrier) for scene in range(61, 81)]
    barrier.release()
    for rc, _, err in finish(hooks):
        assert rc == 0 and err == "", err
    done_flag.touch()
    reports = []
    for rc, out, err in finish(processors):
        assert rc == 0 and err == "", err
        reports.append(json.loads(out))

    assert [r["overlaps"] for r in reports] == [0, 0, 0, 0]
    # The log of lock holds is strictly "enter p, exit p" pairs: no hold ever began inside another.
    lines = log_path.read_text().split()
    pairs = list(zip(lines[0::4], lines[1::4], lines[2::4], lines[3::4], strict=True))
    assert all(a == "enter" and c == "exit" and b == d for a, b, c, d in pairs), lines[:20]
    assert sum(r["holds"] for r in reports) == len(pairs)
    taken = Counter(scene for r in reports for scene in r["taken"])
    assert taken == Counter(range(1, 81))  # every job once: none lost, none twice
    with JobQueue(data_dir) as q:
        counts = q.counts(T0)
    assert (counts.due, counts.deferred, counts.in_flight, counts.inbox) == (0, 0, 0, 0)


# ---- a killed processor ----

HOLDER = """
from sync_queue.jobs import JobQueue
from sync_queue.lock import ProcessorLock
data_dir = Path(sys.argv[1])
lock = ProcessorLock(data_dir)
lock.acquire(timeout=30)
q = JobQueue(data_dir)
first = q.take_due(1700000000.0)
q.complete(first, 1700000000.0)
flight = [q.take_due(1700000000.0).scene_id, q.take_due(1700000000.0).scene_id]
print(json.dumps({"done": first.scene_id, "in_flight": flight}), flush=True)
time.sleep(600)  # killed long before this
"""

RECOVERER = """
from sync_queue.jobs import JobQueue
from sync_queue.lock import ProcessorLock
data_dir, go = Path(sys.argv[1]), sys.argv[2]
wait_for_go(go)
lock = ProcessorLock(data_dir)
lock.acquire(timeout=60)
try:
    q = JobQueue(data_dir)
    recovered = q.recover_abandoned(1700000001.0, max_attempts=5)
    q.ingest(1700000001.0)
    done = []
    while (job := q.take_due(1700000001.0)) is not None:
        done.append([job.scene_id, list(job.reasons), job.attempts])
        q.complete(job, 1700000001.0)
    q.close()
finally:
    lock.release()
print(json.dumps({"recovered": recovered, "done": done}))
"""

READER = """
from sync_queue.jobs import JobQueue
q = JobQueue(Path(sys.argv[1]))
print(q.counts(1700000000.0).in_flight)
q.close(compact=False)
"""


def test_a_sigkilled_lock_holder_loses_the_lock_and_its_jobs_come_back_exactly_once(
    tmp_path: Path, barrier: Barrier
) -> None:
    data_dir = tmp_path / "data"
    with JobQueue(data_dir) as q:
        for scene in range(1, 11):
            q.enqueue(scene, "hook", T0)
    holder = spawn(HOLDER, data_dir)
    try:
        started = json.loads(holder.stdout.readline())
        done_first, in_flight = started["done"], started["in_flight"]
        lock = ProcessorLock(data_dir)
        assert not lock.try_acquire()
        assert lock.is_held_elsewhere()

        # While it lives: a hook for one of its scenes, and another process opening the queue
        # (persist-queue's auto_resume would reset the rows here), change nothing in flight.
        now = Barrier()
        now.release()  # HOOK_ONCE waits for a barrier: this one is open from the start
        spawned = finish([spawn(HOOK_ONCE, data_dir, now, in_flight[0], barrier=now), spawn(READER, data_dir)])
        now.close()
        assert [(rc, err) for rc, _, err in spawned] == [(0, ""), (0, "")]
        assert spawned[1][1].strip() == "2"
        assert not lock.try_acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
        holder.stderr.close()
    assert holder.returncode == -signal.SIGKILL

    assert lock.try_acquire()  # the kernel dropped the dead holder's lock
    lock.release()

    racers = [spawn(RECOVERER, data_dir, barrier, barrier=barrier) for _ in range(3)]
    barrier.release()
    reports = []
    for rc, out, err in finish(racers):
        assert rc == 0 and err == "", err
        reports.append(json.loads(out))

    assert sorted(r["recovered"] for r in reports) == [0, 0, 2]
    done = [entry for r in reports for entry in r["done"]]
    assert Counter(scene for scene, _, _ in done) == Counter(set(range(1, 11)) - {done_first})
    by_scene = {scene: (reasons, attempts) for scene, reasons, attempts in done}
    # The hook that arrived during the dead flight is folded into the one recovered job.
    assert by_scene[in_flight[0]] == (["hook", "Scene.Update.Post"], 1)
    assert by_scene[in_flight[1]] == (["hook"], 1)
    with JobQueue(data_dir) as q:
        assert q.recover_abandoned(T0 + 2) == 0
        assert drain(q, T0 + 2) == []
    assert live_scene_counts(data_dir) == {}


@pytest.mark.parametrize("kills", [1, 3])
def test_repeated_crashes_bring_a_job_back_once_per_crash_never_more(tmp_path: Path, kills: int) -> None:
    """Each crash returns the job once (as the same row); it never piles up copies."""
    data_dir = tmp_path / "data"
    with JobQueue(data_dir) as q:
        q.enqueue(1, "hook", T0)
        q.enqueue(2, "hook", T0)
    crash = """
    from sync_queue.jobs import JobQueue
    import signal
    q = JobQueue(Path(sys.argv[1]))
    print(q.recover_abandoned(1700000000.0), flush=True)
    job = q.take_due(1700000000.0)
    os.kill(os.getpid(), signal.SIGKILL)
    """
    recovered = []
    for _ in range(kills):
        proc = spawn(crash, data_dir)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        recovered.append(int(out.strip()))
        assert sum(live_scene_counts(data_dir).values()) == 2
    assert recovered == [0] + [1] * (kills - 1)
    with JobQueue(data_dir) as q:
        assert q.recover_abandoned(T0) == 1
        jobs = []
        while (job := q.take_due(T0)) is not None:
            jobs.append((job.scene_id, job.attempts))
            q.complete(job, T0)
    assert sorted(jobs) == [(1, kills), (2, 0)]
    assert live_scene_counts(data_dir) == {}


def test_lock_is_free_the_moment_its_holder_exits_without_releasing_it(tmp_path: Path) -> None:
    script = """
    from sync_queue.lock import ProcessorLock
    lock = ProcessorLock(Path(sys.argv[1]))
    lock.acquire(timeout=10)
    raise SystemExit(3)
    """
    proc = spawn(script, tmp_path)
    proc.communicate(timeout=60)
    assert proc.returncode == 3
    lock = ProcessorLock(tmp_path)
    assert lock.try_acquire()  # no waiting: free the moment its holder exited
    lock.release()
