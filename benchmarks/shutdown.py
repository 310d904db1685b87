"""How long `empire run` takes to stop on SIGTERM, and whether it ever hangs.

Starts `empire run` with nothing configured (the shipped example policy: every area, its jobs and
background tasks, SQLite) `--stops` times (default 20), waits until it answers /readyz, lets it
run `--settle` seconds, sends SIGTERM and times the exit. A stop that takes longer than `--hang`
seconds (default 30) counts as a hang: the process gets SIGUSR1 (its stacks into the log) and
SIGKILL. `--busy N` runs N busy loops meanwhile, the CPU load under which the hang showed in CI
(load average 9-12 on 2 cores). Prints one JSON line: stops, hangs, exit codes, p50/p90/max
seconds from SIGTERM to exit, and the load average.

    .venv/bin/python benchmarks/shutdown.py [--stops 20] [--settle 0] [--busy 0] [--hang 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

MAIN = "import sys; from empire.cli import main; sys.exit(main())"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_stop(work: Path, settle: float, hang: float) -> tuple[float | None, int | None]:
    """(seconds from SIGTERM to exit or None for a hang, exit code)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMPIRE_", "KUBE"))}
    env.update(EMPIRE_DATA_DIR=str(work / "data"), KUBECONFIG=str(work / "none"), EMPIRE_HTTP__PORT=str(port))
    log = work / "daemon.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", MAIN, "run"], env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # a real process starting: no fake clock crosses a process
        else:
            raise SystemExit(f"empire run did not start within 120 s:\n{log.read_text()[-3000:]}")
        time.sleep(settle)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=hang)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            print(f"hang; the daemon's log and stacks:\n{log.read_text()[-6000:]}", file=sys.stderr)
            return None, None
        return time.monotonic() - sent, code
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stops", type=int, default=20)
    parser.add_argument("--settle", type=float, default=0.0, help="seconds between ready and SIGTERM")
    parser.add_argument("--busy", type=int, default=0, help="busy loops running meanwhile (CPU load)")
    parser.add_argument("--hang", type=float, default=30.0, help="seconds after which a stop counts as a hang")
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    seconds: list[float] = []
    codes: dict[str, int] = {}
    hangs, loads = 0, []
    try:
        for _ in range(args.stops):
            with tempfile.TemporaryDirectory() as tmp:
                took, code = one_stop(Path(tmp), args.settle, args.hang)
            loads.append(os.getloadavg()[0])
            if took is None:
                hangs += 1
                continue
            seconds.append(took)
            codes[str(code)] = codes.get(str(code), 0) + 1
    finally:
        for p in busy:
            p.kill()
            p.wait()
    ordered = sorted(seconds)
    print(json.dumps({
        "benchmark": "empire run: SIGTERM to exit",
        "python": platform.python_version(), "cpus": os.cpu_count(), "busy_loops": args.busy,
        "stops": args.stops, "hangs": hangs, "hang_after_s": args.hang, "exit_codes": codes,
        "p50_s": round(statistics.median(ordered), 2) if ordered else None,
        "p90_s": round(ordered[int(0.9 * (len(ordered) - 1))], 2) if ordered else None,
        "max_s": round(ordered[-1], 2) if ordered else None,
        "load_average_1m": [round(min(loads), 1), round(max(loads), 1)] if loads else None,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
