"""The agent's HTTP port under load on loopback, and what the load does to the control loop's tick.

A real daemon (`build_daemon` + `run_daemon`: the shipped example policy with a 1 s loop interval,
SQLite, simulated providers, every area's jobs) runs in a child process and records when each
tick starts and how long it takes. This process first lets it tick idle, then sends `--requests`
requests (default 2,000) with `--concurrency` in flight (50): /healthz, /readyz, /status,
/metrics, /alerts and authenticated content-access ingest writes, round robin. Prints one JSON
line: requests/s, p50/p99 latency, errors, and the tick's p50/p99 duration and interval jitter
(start-to-start interval minus the loop interval) idle and under load.

    .venv/bin/python benchmarks/http_load.py [--requests 2000] [--concurrency 50] [--idle 12]
"""

from __future__ import annotations

import sys

# This file is named http.py, as the brief for the benchmarks asks: run as a script, its folder
# comes first on sys.path and would shadow the standard library's `http` package (httpx needs it).
if sys.path and sys.path[0] == __file__.rsplit("/", 1)[0]:
    sys.path.pop(0)

import argparse
import asyncio
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

TOKEN = "bench-ingest-token"
PATHS = ["/healthz", "/readyz", "/status", "/metrics", "/alerts", "/v1/content/access"]


def serve(port: int, workdir: Path, ticks_out: Path) -> None:
    """The child: the real daemon, its ticks timed; written to `ticks_out` at SIGTERM."""
    import logging

    import anyio

    from empire import logrepeat
    from empire.agent.daemon import build_daemon, run_daemon
    from empire.agent.tiering.inventory import ContentObject
    from empire.config.settings import load_settings
    from empire.policies.loading import default_policy_path
    from empire.state.inventory import SqlInventory

    doc = yaml.safe_load(default_policy_path().read_text())
    doc.setdefault("loop", {})["interval"] = "1s"
    policy = workdir / "policy.yaml"
    policy.write_text(yaml.safe_dump(doc))
    settings = load_settings(data_dir=workdir / "data", kubernetes={"mode": "disabled"}, http={"port": port},
                             ingest_token=TOKEN)  # fmt: skip
    ticks: list[tuple[float, float]] = []
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logrepeat.install()  # as `empire run` logs

    async def main() -> None:
        daemon = await build_daemon(settings, policy)
        tick = daemon.loop.tick

        async def timed() -> Any:
            start = time.monotonic()
            try:
                return await tick()
            finally:
                ticks.append((start, time.monotonic() - start))

        daemon.loop.tick = timed  # type: ignore[method-assign]
        now = daemon.clock.now()
        await SqlInventory(daemon.db).register(ContentObject(id="bench-1", size=1 << 20, checksum="sha256:" + "0" * 64,
                                                          tier="hot", location="bench-1", created_at=now,
                                                          tier_since=now))  # fmt: skip
        await run_daemon(daemon)

    try:
        anyio.run(main)
    finally:
        ticks_out.write_text(json.dumps({"interval": 1.0, "ticks": ticks}))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def tick_stats(ticks: list[tuple[float, float]], interval: float, start: float, end: float) -> dict[str, Any]:
    inside = [(s, d) for s, d in ticks if start <= s <= end]
    durations = [d * 1000 for _, d in inside]
    jitter = [abs((b[0] - a[0]) - interval) * 1000 for a, b in itertools.pairwise(inside)]
    return {
        "ticks": len(inside),
        "duration_p50_ms": round(quantile(durations, 0.5), 1), "duration_p99_ms": round(quantile(durations, 0.99), 1),
        "jitter_p50_ms": round(quantile(jitter, 0.5), 1), "jitter_p99_ms": round(quantile(jitter, 0.99), 1),
    }  # fmt: skip


async def load(base: str, requests: int, concurrency: int) -> tuple[dict[str, list[float]], dict[str, int], float]:
    latencies: dict[str, list[float]] = {p: [] for p in PATHS}
    errors: dict[str, int] = {}
    body = {"events": [{"id": "bench-1", "count": 1}]}
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            for i in counter:
                path = PATHS[i % len(PATHS)]
                start = time.perf_counter()
                try:
                    if path.startswith("/v1/"):
                        r = await client.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
                    else:
                        r = await client.get(path)
                    if r.status_code != 200:
                        errors[f"{path} {r.status_code}"] = errors.get(f"{path} {r.status_code}", 0) + 1
                except httpx.HTTPError as exc:
                    errors[f"{path} {type(exc).__name__}"] = errors.get(f"{path} {type(exc).__name__}", 0) + 1
                latencies[path].append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - start


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the daemon did not become ready in 60 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--idle", type=float, default=12.0, help="seconds of idle ticks measured before the load")
    ap.add_argument("--serve", nargs=3, metavar=("PORT", "DIR", "TICKS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]), Path(args.serve[2]))
        return
    from empire.agent.http import bind

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        probe = bind("127.0.0.1", 0)
        port = probe.getsockname()[1]
        probe.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EMPIRE_", "KUBE"))}
        log, ticks_file = work / "daemon.log", work / "ticks.json"
        with log.open("w") as fh:
            proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), tmp, str(ticks_file)], env=env,
                                    stdout=fh, stderr=subprocess.STDOUT)  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, proc, log)
            idle_start = time.monotonic()
            time.sleep(args.idle)
            load_start = time.monotonic()
            by_path, errors, seconds = asyncio.run(load(base, args.requests, args.concurrency))
            load_end = time.monotonic()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        recorded = json.loads(ticks_file.read_text())
    interval, ticks = recorded["interval"], [tuple(t) for t in recorded["ticks"]]
    latencies = [x for xs in by_path.values() for x in xs]
    print(json.dumps({
        "benchmark": "http load on loopback against a real daemon",
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "requests": len(latencies), "concurrency": args.concurrency, "errors": sum(errors.values()),
        "error_kinds": errors,
        "requests_per_s": round(len(latencies) / seconds, 1),
        "latency_p50_ms": round(quantile(latencies, 0.5) * 1000, 1),
        "latency_p99_ms": round(quantile(latencies, 0.99) * 1000, 1),
        "latency_mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "latency_p50_p99_ms_by_path": {p: [round(quantile(xs, 0.5) * 1000, 1), round(quantile(xs, 0.99) * 1000, 1)]
                                       for p, xs in by_path.items()},
        "load_average_1m": round(os.getloadavg()[0], 1),
        "tick_interval_s": interval,
        "tick_idle": tick_stats(ticks, interval, idle_start, load_start),
        "tick_under_load": tick_stats(ticks, interval, load_start, load_end),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
