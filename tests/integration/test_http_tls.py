"""TLS on the agent's port (`agent/tls.py`): served from files, TLS 1.2+ only, a rotated certificate
picked up without a restart (a broken one ignored), and a client that never finishes its handshake
holds up nobody."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from empire.agent.http import ConnectionLimits, serve
from empire.agent.tls import TlsFiles
from empire.config.settings import load_settings
from empire.errors import ConfigError
from fakes.server import free_port
from fakes.tls import Pki, make_pki

LIMITS = ConnectionLimits(header_timeout=1.0, body_timeout=1.0, keep_alive=0.3, max_connections=5)


async def _ok(request: object) -> JSONResponse:
    return JSONResponse({"status": "ok"})


APP = Starlette(routes=[Route("/healthz", _ok)])


@contextmanager
def serving(tls: TlsFiles) -> Iterator[int]:
    port, up, stop = free_port(), threading.Event(), threading.Event()

    async def main() -> None:
        started = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve(APP, "127.0.0.1", port, started=started, limits=LIMITS, tls=tls))
            await started.wait()
            up.set()
            while not stop.is_set():  # noqa: ASYNC110 - the stop signal comes from another thread
                await anyio.sleep(0.02)
            tg.cancel_scope.cancel()

    thread = threading.Thread(target=anyio.run, args=(main,), daemon=True)
    thread.start()
    assert up.wait(10)
    try:
        yield port
    finally:
        stop.set()
        thread.join(10)


def install(pki: Pki, live: Path) -> tuple[Path, Path]:
    """Put pki's server pair at live/tls.crt and live/tls.key, swapped in as cert-manager's mounted
    Secret does (a new directory, then an atomic rename of the symlink to it)."""
    version = live / f"..{time.monotonic_ns()}"
    version.mkdir(parents=True)
    shutil.copy(pki.server_cert, version / "tls.crt")
    shutil.copy(pki.server_key, version / "tls.key")
    tmp = live / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(version.name)
    os.replace(tmp, live / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (live / name).is_symlink():
            (live / name).symlink_to(f"..data/{name}")
    return live / "tls.crt", live / "tls.key"


def get(port: int, ca: Path, version: ssl.TLSVersion | None = None) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    with httpx.Client(verify=ctx, timeout=5) as c:
        return c.get(f"https://127.0.0.1:{port}/healthz").status_code


def test_tls_12_or_newer_from_files_and_a_rotation_without_restart(tmp_path: Path, caplog) -> None:
    first, second = make_pki(tmp_path / "a"), make_pki(tmp_path / "b")
    cert, key = install(first, tmp_path / "live")
    tls = TlsFiles(cert, key, check_every=0.0)
    with serving(tls) as port:
        assert get(port, first.ca, ssl.TLSVersion.TLSv1_2) == 200 and get(port, first.ca, ssl.TLSVersion.TLSv1_3) == 200
        assert tls.context().minimum_version is ssl.TLSVersion.TLSv1_2  # 1.0 and 1.1 are never offered
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.load_verify_locations(first.ca)
            old.minimum_version, old.maximum_version = ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_1
        with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            old.wrap_socket(raw, server_hostname="127.0.0.1")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:  # plain HTTP gets no HTTP answer
            raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not raw.recv(100).startswith(b"HTTP/1.1 200")

        install(second, tmp_path / "live")  # rotated: the next connection gets the new certificate
        assert get(port, second.ca) == 200
        with pytest.raises(httpx.ConnectError):
            get(port, first.ca)
        assert tls.reloads == 1

        (tmp_path / "live" / "..data" / "tls.key").write_text("half-written")
        with caplog.at_level(logging.WARNING, logger="empire.agent.tls"):
            assert get(port, second.ca) == 200  # a pair that does not load: the last good one stays
        assert "does not load" in caplog.text and tls.reloads == 1


def test_a_client_that_never_finishes_its_handshake_holds_up_nobody(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with serving(TlsFiles(pki.server_cert, pki.server_key)) as port:
        silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        start = time.monotonic()
        assert get(port, pki.ca) == 200
        assert time.monotonic() - start < 0.9  # not after the silent clients' handshake timeout (1 s)
        for s in silent:
            s.settimeout(3)
            with contextlib.suppress(ConnectionResetError):
                assert s.recv(100) == b""  # closed at the handshake timeout
            s.close()


def test_settings_name_both_files_and_a_pair_that_does_not_load_stops_the_start(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file"):
        load_settings(http={"tls_cert_file": str(pki.server_cert)})
    with pytest.raises(ConfigError, match="cannot be used"):
        TlsFiles(pki.server_cert, pki.client_key)  # a key of another certificate
    with pytest.raises(ConfigError, match="No such file"):
        TlsFiles(tmp_path / "missing.crt", pki.server_key)
