"""A PostgreSQL server of a test's own (initdb + pg_ctl on a free 127.0.0.1 port), to stop and start.

Why not the shared server scripts/with-services.sh starts: a test that stops PostgreSQL under a
running daemon must not stop it under every other test. The binaries are the Debian packages'
(`/usr/lib/postgresql/*/bin`, as scripts/services.sh finds them); as root the server runs as the
`postgres` user, which PostgreSQL requires. No binaries: the test is skipped (or fails under
EMPIRE_TEST_REQUIRE_SERVICES=1, through `require_service("postgres")` in the caller).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fakes.server import free_port

__all__ = ["PgCluster", "pg_bin"]


def pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: float(p.parts[-3]))
    return found[-1].parent if found else None


class PgCluster:
    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin, self.root = bin_dir, root
        self.data = root / "pg"
        self.port = free_port()
        self.url = f"postgresql+asyncpg://empire:empire@127.0.0.1:{self.port}/empire"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, cwd="/tmp", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def init(self) -> None:
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.data, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self.start()
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qc",
                  "CREATE USER empire PASSWORD 'empire'", "-c", "CREATE DATABASE empire OWNER empire")  # fmt: skip

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[PgCluster | None]:
        bin_dir = pg_bin()
        if bin_dir is None:
            yield None
            return
        root = Path(tempfile.mkdtemp(prefix="empire-pg-"))
        cluster = cls(bin_dir, root)
        try:
            cluster.init()
            yield cluster
        finally:
            with contextlib.suppress(Exception):
                cluster.stop("immediate")
            shutil.rmtree(root, ignore_errors=True)
