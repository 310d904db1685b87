"""The API's admission: a few requests handled at once, the rest wait their turn; while a tick
runs, new requests wait for it (the control loop goes first); the probes skip the line."""

from __future__ import annotations

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from empire.agent.http import Admission

pytestmark = pytest.mark.anyio


class Ticking:
    """Stands in for `ControlLoop.outside_tick`: a tick runs until `end` is set."""

    def __init__(self) -> None:
        self.end = anyio.Event()

    async def outside_tick(self, limit: float) -> None:
        await self.end.wait()


async def test_requests_wait_for_a_running_tick_and_for_a_free_slot_but_probes_do_not() -> None:
    release, active, peak, served = anyio.Event(), [0], [0], []

    async def work(request: Request) -> JSONResponse:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        await release.wait()
        active[0] -= 1
        served.append(request.url.path)
        return JSONResponse({"ok": True})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    tick = Ticking()
    app = Starlette(routes=[Route("/work", work), Route("/healthz", healthz)])
    app.add_middleware(Admission, limit=2, loop_first=tick.outside_tick)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        codes: list[int] = []

        async def get() -> None:
            codes.append((await client.get("/work")).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(get)
            await anyio.wait_all_tasks_blocked()
            assert (await client.get("/healthz")).status_code == 200  # the probe is answered meanwhile
            assert active[0] == 0  # a tick runs: no request started
            tick.end.set()
            await anyio.wait_all_tasks_blocked()
            assert active[0] == 2  # then two at once, the others queue
            release.set()
    assert codes == [200] * 5 and peak[0] == 2 and len(served) == 5


async def test_a_request_that_waits_too_long_is_answered_503_with_retry_after() -> None:
    hold = anyio.Event()

    async def work(request: Request) -> JSONResponse:
        await hold.wait()
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/work", work)])
    app.add_middleware(Admission, limit=1, wait=0.05)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(client.get, "/work")
        await anyio.wait_all_tasks_blocked()
        second = await client.get("/work")
        hold.set()
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
