"""The status page in a real browser: `empire run --simulate` as a process, headless Chromium on `/`.

The trace is two days of a daily cycle with a ten-minute surge at 16:00 on the first day (the
simulation starts at 12:00, a quarter into the trace, so the models have history). At x600 an
hour passes in six seconds. The page must show every section with live data, a chart with points,
a decision's reasons as `empire explain` writes them, the anomaly alert once the surge has been
replayed, and revenue from the simulated audience, without a console error. The screenshot is kept in build/test-artifacts/.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import numpy as np
import pytest

from fakes.chromium import chromium_page
from fakes.server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.chromium]
MAIN = "import sys; from empire.cli import main; sys.exit(main())"
ARTIFACTS = Path(os.environ.get("EMPIRE_TEST_ARTIFACTS", Path(__file__).parents[2] / "build" / "test-artifacts"))
SECTIONS = ("overview", "alerts", "targets", "pools", "tiers", "personas")


def write_trace(path: Path) -> None:
    """Requests per minute: 40 +- 25 over the day, Poisson noise, x4 for ten minutes at 16:00 on day one."""
    rng = np.random.default_rng(3)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    lines = ["timestamp,value"]
    for i in range(2 * 1440):
        hour = (i % 1440) / 60
        rate = 40 + 25 * math.sin(2 * math.pi * (hour - 10) / 24)
        if 16 * 60 <= i < 16 * 60 + 10:
            rate *= 4
        at = start + timedelta(minutes=i)
        lines.append(f"{at.strftime('%Y-%m-%dT%H:%M:%SZ')},{rng.poisson(rate)}")
    path.write_text("\n".join(lines) + "\n")


def start_daemon(tmp: Path, trace: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "EMPIRE_DATA_DIR": str(tmp / "data"), "EMPIRE_HTTP__PORT": str(port),
           "EMPIRE_HTTP__HOST": "127.0.0.1"}  # fmt: skip
    for var in ("EMPIRE_DATABASE_URL", "EMPIRE_POLICY_FILE", "EMPIRE_REDIS_URL", "EMPIRE_PROMETHEUS__URL"):
        env.pop(var, None)
    env["EMPIRE_KUBERNETES__MODE"] = "disabled"
    return subprocess.Popen([sys.executable, "-c", MAIN, "run", "--simulate", str(trace), "--speed", "600"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_ready(url: str, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"the simulation exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the simulation did not become ready")


PROBE = """(() => {
  const text = (sel) => (document.querySelector(sel) || {}).textContent || "";
  const charts = [...document.querySelectorAll("svg.chart")].map(s => Number(s.dataset.points || 0));
  return {
    sections: [...document.querySelectorAll("[data-section]")].map(s => s.dataset.section),
    charts: charts,
    polylines: document.querySelectorAll("svg.chart polyline.demand").length,
    decision: text("pre.decision"),
    alerts: text("#firing"),
    queue: text("#queue-depth"),
    accounts: text("#pools table"),
    tiers: text("#tiers"),
    personas: text("#personas"),
    overview: text("#overview"),
  };
})()"""


def test_the_status_page_shows_a_simulated_daemon_live(tmp_path: Path) -> None:
    binary = os.environ["EMPIRE_TEST_CHROMIUM"]
    trace = tmp_path / "trace.csv"
    write_trace(trace)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_daemon(tmp_path, trace, port)
    try:
        wait_ready(url, proc)

        async def browse() -> tuple[dict, list[str], bytes]:
            async with chromium_page(binary, tmp_path / "profile") as page:
                await page.goto(url + "/")
                seen: dict = {}
                deadline = time.monotonic() + 150
                while time.monotonic() < deadline:
                    await anyio.sleep(1)
                    seen = await page.evaluate(PROBE) or {}
                    if ("queue-anomaly" in seen.get("alerts", "") and seen.get("charts")
                            and min(seen["charts"]) > 10 and "reasons:" in seen.get("decision", "")):  # fmt: skip
                        break
                await anyio.sleep(3.5)  # one more refresh after the alert: it must not break the page
                seen = await page.evaluate(PROBE) or {}
                shot = await page.screenshot()
                return seen, list(page.errors), shot

        seen, errors, shot = anyio.run(browse)
        data = httpx.get(f"{url}/ui/data", timeout=30).json()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "status-page.png").write_bytes(shot)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "stopped cleanly" in err
    assert errors == [], errors
    assert list(seen["sections"]) == list(SECTIONS)
    assert len(seen["charts"]) == 2 and min(seen["charts"]) > 10, seen["charts"]  # generator and api, with points
    assert seen["polylines"] == 2
    assert "reasons:" in seen["decision"] and ("signal queue:" in seen["decision"] or "signal cpu:" in seen["decision"])
    assert "queue-anomaly" in seen["alerts"], seen["alerts"]  # firing, or resolved since (the surge is short)
    assert seen["queue"].strip().isdigit()
    assert "music-sim/main-1" in seen["accounts"] and "60/min" in seen["accounts"]
    assert "hot" in seen["tiers"] and "archive" in seen["tiers"]
    assert "luna-waves" in seen["personas"] and "grit-city" in seen["personas"]
    # the simulated audience played the generated tracks and paid for them: revenue and ROI per persona
    assert sum(p["revenue"] for p in data["personas"]) > 0, data["personas"]
    assert data["status"]["simulation"]["audience"]["plays"] > 0
    assert "simulation" in seen["overview"] and "x600" in seen["overview"]
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
    lines = [line for line in out.splitlines() if " | " in line]
    assert len(lines) >= 3, out  # one summary line per simulated hour
    assert "generator" in lines[0] and "ready" in lines[0]
