"""A shutdown that cancels work holding a state-DB connection ends, in bounded time, with nothing
journaled half-way.

The bug (CI, about 1 `empire run` stop in 9): a task cancelled while its statement ran on
aiosqlite's thread (a `BEGIN IMMEDIATE` waiting for another writer's lock) left a connection close
behind that never finished, and the process hung in `asyncio.run`'s shutdown after "stopped
cleanly". The first test reproduces that in a child process every time before the fix; a hang
shows as a timeout here, not as a stuck test run.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio
import pytest
from sqlalchemy import insert, select

from empire.agent.clock import SystemClock
from empire.agent.monitor import Monitor
from empire.agent.scheduler import PeriodicJobs
from empire.state import tables
from empire.state.database import Database

pytestmark = pytest.mark.slow

# Cancel a task group (as SIGTERM does) while a task's write waits for the write lock that another
# connection holds for `hold` seconds; then close the database and return from anyio.run.
SCRIPT = textwrap.dedent(
    """
    import sqlite3, sys, threading
    from datetime import UTC, datetime
    import anyio
    from sqlalchemy import event
    import empire.state.database as database
    from empire.agent.records import AuditRecord
    from empire.state.database import Database
    from empire.state.store import SqlStateStore
    from empire.errors import TemporaryError

    path, hold, busy = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    database.SQLITE_BUSY_TIMEOUT = busy

    async def main() -> None:
        db = await Database.open(f"sqlite+aiosqlite:///{path}")
        store = SqlStateStore(db)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock: our BEGIN IMMEDIATE waits
        release = threading.Timer(hold, other.commit)
        release.daemon = True  # the process may end while the other writer still holds on
        release.start()
        began = anyio.Event()

        def before(conn, cursor, statement, *args) -> None:
            if statement == "BEGIN IMMEDIATE":
                began.set()

        event.listen(db.engine.sync_engine, "before_cursor_execute", before)
        async with anyio.create_task_group() as tg:
            async def write() -> None:
                try:
                    await store.audit(AuditRecord(datetime.now(UTC), "t", "stopping", "db", {}))
                    print("written", flush=True)
                except TemporaryError as exc:
                    print("not written:", exc, flush=True)
            tg.start_soon(write)
            await began.wait()
            await anyio.wait_all_tasks_blocked()  # the write's BEGIN IMMEDIATE waits on aiosqlite's thread
            tg.cancel_scope.cancel()
        await db.close()

    anyio.run(main)
    print("exited", flush=True)
    """
)


def run_script(db: Path, hold: float, busy: float = 10.0, timeout: float = 30.0) -> str:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(db), str(hold), str(busy)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONFAULTHANDLER": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def audit_rows(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT action FROM audit")]


def test_a_write_cancelled_while_it_waits_for_the_lock_completes_and_the_process_exits(tmp_path):
    out = run_script(tmp_path / "s.db", hold=1.0)  # hung forever in asyncio.run's shutdown before the fix
    assert out.splitlines() == ["written", "exited"]
    assert audit_rows(tmp_path / "s.db") == ["stopping"]  # the transaction ran to its commit, once


def test_a_write_cannot_wait_for_the_lock_forever(tmp_path):
    started = time.monotonic()
    out = run_script(tmp_path / "s.db", hold=60.0, busy=1.0)  # the other writer never lets go in time
    assert time.monotonic() - started < 20
    lines = out.splitlines()
    assert lines[0].startswith("not written:") and "database is locked" in lines[0] and lines[1] == "exited"
    assert audit_rows(tmp_path / "s.db") == []  # rolled back whole: nothing half-way


class TwoRows:
    """A unit of work that writes two rows and waits for `go_on` between them."""

    def __init__(self, db: Database) -> None:
        self.db, self.inside, self.go_on = db, anyio.Event(), anyio.Event()

    async def __call__(self, *_: object) -> None:
        row = {"at": datetime.now(UTC), "actor": "t", "subject": "db", "details": {}}
        async with self.db.begin() as conn:
            await conn.execute(insert(tables.audit).values(action="first", **row))
            self.inside.set()
            await self.go_on.wait()  # cancelled here, inside the transaction
            await conn.execute(insert(tables.audit).values(action="second", **row))

    async def rows(self) -> list[str]:
        async with self.db.connect() as conn:
            return list((await conn.execute(select(tables.audit.c.action).order_by(tables.audit.c.id))).scalars())


@pytest.mark.anyio
async def test_a_cancelled_transaction_commits_whole(database_url: str):
    """Cancellation takes effect after the unit of work, on SQLite and PostgreSQL alike."""
    db = await Database.open(database_url)
    try:
        work = TwoRows(db)
        async with anyio.create_task_group() as tg:
            tg.start_soon(work)
            await work.inside.wait()
            tg.cancel_scope.cancel()
            work.go_on.set()
        assert await work.rows() == ["first", "second"]
    finally:
        await db.close()


@pytest.mark.anyio
async def test_a_periodic_job_cancelled_at_shutdown_commits_its_unit_of_work_whole(tmp_path):
    """The scheduler cancels a job past its grace through a cancel scope, not `Task.cancel()` (which
    no shield stops: the write was rolled back, or its connection abandoned mid-statement)."""
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    try:
        work, after = TwoRows(db), []

        async def refit(now: datetime) -> None:
            await work()
            after.append("unit done")
            await anyio.sleep_forever()  # the job's own work after its write: cancelled here

        wall = PeriodicJobs(SystemClock(), Monitor())
        wall.add("refit", timedelta(hours=1), refit)
        wall.start()
        with anyio.fail_after(10):
            await work.inside.wait()
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(wall.aclose, grace=0.0))  # cancelled at once
                await anyio.wait_all_tasks_blocked()  # aclose has cancelled it and waits
                work.go_on.set()
        assert await work.rows() == ["first", "second"] and after == ["unit done"]
    finally:
        await db.close()


def test_sigterm_while_another_writer_holds_the_lock_stops_cleanly(tmp_path):
    """`empire run` as a process: its tasks wait for the write lock when SIGTERM arrives."""
    from test_loop_daemon import start, wait_http

    from fakes.server import free_port

    port = free_port()
    proc, log = start(tmp_path, EMPIRE_HTTP__PORT=str(port))
    other = None
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        other = sqlite3.connect(tmp_path / "data" / "empire.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        time.sleep(1.0)  # a real process's tasks reach the lock: no fake clock crosses a process
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        other.commit()
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        pytest.fail("empire run did not stop within 30 s of SIGTERM:\n" + log.read_text()[-8000:])
    finally:
        if other is not None:
            other.close()
        proc.kill()
    out = log.read_text()
    assert code == 0, out
    assert "stopped cleanly" in out


def test_a_shutdown_that_cannot_finish_ends_at_the_deadline_with_the_stacks(tmp_path):
    """The bound holds whatever hangs: here every write waits for a lock another process keeps."""
    from test_loop_daemon import start, wait_http

    from fakes.server import free_port

    port = free_port()
    proc, log = start(tmp_path, EMPIRE_HTTP__PORT=str(port), EMPIRE_SHUTDOWN_TIMEOUT="2")
    other = None
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        other = sqlite3.connect(tmp_path / "data" / "empire.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # held until the daemon is gone
        time.sleep(1.0)  # its tasks reach the lock
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if other is not None:
            other.close()
        proc.kill()
    out = log.read_text()
    assert code == 1, out
    assert 2 <= took < 10, out
    assert "shutdown did not finish within 2s (EMPIRE_SHUTDOWN_TIMEOUT)" in out
    assert "most recent call first" in out  # every thread's stack, for the why
