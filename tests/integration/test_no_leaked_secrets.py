"""No credential leaves the process: `empire run` (real processes) with a marker password in every
URL-shaped setting and every secret, then a grep of everything a person or a scraper can read.

What is read: the daemon's logs (a `--once` run against a dead Prometheus, then a running daemon
against a fake one that wants the URL's basic auth, fails one target's query and feeds an alert
to receivers that are down), `/status`, `/metrics`, `/alerts`, `/healthz`, `/readyz`, every
column of every table of the state database (found by SQLAlchemy inspection, not listed by
hand), and every read-only CLI command (enumerated from the argument parser: a new command fails
`test_every_cli_command_is_classified` until it is added to READS or NOT_READS).

Markers differ per setting, so a failure names the setting that leaked.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from sqlalchemy import MetaData, inspect, select

from empire.cli import build_parser
from empire.state.database import Database
from fakes.prometheus import FakePrometheus
from fakes.server import free_port

pytestmark = pytest.mark.slow
MAIN = "import sys; from empire.cli import main; sys.exit(main())"
TAG = "Lk9q"  # every marker starts with it; none of it occurs in empire's own output

# Read-only commands, with the arguments to run them (`{policy}` is the policy file). A command
# that changes state, runs a long job or works only on a file named on its command line is in
# NOT_READS with the reason.
READS: dict[str, list[list[str]]] = {
    "explain": [["explain", "sick"], ["explain", "ok", "--format", "json"]],
    "policy validate": [["policy", "validate", "{policy}"]],
    "policy show": [["policy", "show", "{policy}"]],
    "policy schema": [["policy", "schema"]],
    "config show": [["config", "show"]],
    "db status": [["db", "status"]],
    "db verify": [["db", "verify"]],
    "jobs list": [["jobs", "list"], ["jobs", "list", "--format", "json"]],
    "jobs show": [["jobs", "show", "1"]],
    "pools status": [["pools", "status"]],
    "content show": [["content", "show", "no-such-object"]],
    "report": [["report"], ["report", "--format", "json"]],
    "tiers plan": [["tiers", "plan"]],
    "tiers status": [["tiers", "status"]],
    "alerts list": [["alerts", "list", "--state", "all"]],
    "alerts outbox": [["alerts", "outbox", "--state", "all"]],
    "silence list": [["silence", "list", "--all"]],
    "tokens list": [["tokens", "list", "--all"], ["tokens", "list", "--format", "json"]],
    "audit": [["audit"], ["audit", "--format", "json"]],
    "operator crd": [["operator", "crd"]],
    "operator example": [["operator", "example"]],
    "version": [["version"]],
}
NOT_READS: dict[str, str] = {
    "run": "the daemon itself: its output is read above",
    "operator run": "a daemon of its own (needs a cluster)",
    "backtest": "replays a trace file named on the command line",
    "forecast": "works on a CSV file named on the command line",
    "detect": "works on files named on the command line",
    "db upgrade": "changes the database",
    "db backup": "writes a backup (the manifest's source is the masked URL: tests/integration/test_db_backup.py)",
    "db restore": "changes the database",
    "jobs retry": "changes jobs",
    "jobs cancel": "changes jobs",
    "jobs resolve": "changes jobs",
    "pools run": "runs the pools (a daemon)",
    "pools hold": "changes holds",
    "pools release": "changes holds",
    "content add": "changes the inventory",
    "content import": "changes the inventory",
    "content import-metrics": "changes the performance figures and the inventory's revenue",
    "content touch": "changes the inventory",
    "content verify": "changes the inventory (quarantines)",
    "tiers apply": "moves objects",
    "silence add": "changes silences",
    "silence expire": "changes silences",
    "jobs submit": "changes jobs",
    "tokens create": "changes tokens (and prints the new one: that is its purpose)",
    "tokens revoke": "changes tokens",
}


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path)
    for action in subs:
        for name, child in action.choices.items():
            yield from leaf_commands(child, (*path, name))


def test_every_cli_command_is_classified() -> None:
    commands = set(leaf_commands(build_parser()))
    assert not set(READS) & set(NOT_READS)
    assert commands - set(READS) - set(NOT_READS) == set(), "classify the new command in READS or NOT_READS"
    assert set(READS) | set(NOT_READS) <= commands, "a command in READS/NOT_READS no longer exists"


# -- the deployment -------------------------------------------------------------------------------


def marker(name: str) -> str:
    return f"{TAG}{name}{uuid.uuid4().hex[:6]}"


def write_policy(path: Path, dead: int, external: str) -> None:
    dead_url = f"http://127.0.0.1:{dead}"
    path.write_text(yaml.safe_dump({
        "loop": {"interval": "1s"},
        "targets": [
            {"name": name, "workload": {"name": name, "namespace": "music"}, "max_replicas": 10,
             "signals": [{"name": "queue", "query": f"sum(queue_{name})", "type": "total", "target": 50}]}
            for name in ("ok", "sick")
        ],
        "providers": [{
            "name": "api", "kind": "http", "cost_per_job": 0.1,
            "http": {"submit_url": f"{dead_url}/v1/jobs", "poll_url": f"{dead_url}/v1/jobs/{{job_id}}",
                     "callback_secret": {"env": "LEAK_CALLBACK"}},
            "retry": {"max_attempts": 2, "backoff_base": "100ms", "backoff_max": "200ms"},
            "accounts": [{"name": "k1", "api_key": {"env": "LEAK_API_KEY"}}],
        }],
        "personas": [{"name": "luna", "genres": ["synthwave"], "cadence": {"tracks": 1, "every": "1d"},
                      "providers": ["api"]}],
        "alerting": {
            "external_url": external,
            "receivers": [
                {"name": "dashboard", "dashboard": {}},
                {"name": "am", "alertmanager": {"url": dead_url, "username": "empire",
                                                "password": {"env": "LEAK_AM_PASSWORD"}}},
                {"name": "slack", "slack": {"webhook_url": {"env": "LEAK_SLACK_WEBHOOK"}}},
            ],
            "route": {"receiver": "dashboard", "group_wait": "0s", "group_interval": "1s", "routes": [
                {"receiver": "am", "continue": True}, {"receiver": "slack"}]},
            "rules": [{"name": "queue-high", "kind": "threshold", "target": "ok", "signal": "queue",
                       "threshold": 100, "severity": "warning"}],
        },
    }))  # fmt: skip


def _can_log_in(url: str) -> bool:
    import asyncpg

    async def go() -> bool:
        try:
            await (await asyncpg.connect(url.replace("+asyncpg", ""), timeout=10)).close()
        except asyncpg.InvalidAuthorizationSpecificationError:
            return False
        return True

    return anyio.run(go)


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(environment, markers): every URL-shaped setting and every secret carries its own marker.
    On Redis the marker is the password of an ACL user made for the test; on PostgreSQL it is the
    password in the URL (the test cluster trusts local connections: scripts/services.sh)."""
    dead = free_port()  # nothing listens: connection refused
    markers = {name: marker(name) for name in (
        "prometheus_url", "prometheus_password", "prometheus_bearer", "ingest_token", "api_key",
        "callback", "am_password", "slack_webhook")}  # fmt: skip
    policy = tmp_path / "policy.yaml"
    port = free_port()
    write_policy(policy, dead, f"http://127.0.0.1:{port}")
    env = {
        "EMPIRE_DATA_DIR": str(tmp_path / "data"), "EMPIRE_POLICY_FILE": str(policy),
        "EMPIRE_KUBERNETES__MODE": "disabled", "EMPIRE_HTTP__PORT": str(port),
        "EMPIRE_INGEST_TOKEN": markers["ingest_token"],
        "LEAK_API_KEY": markers["api_key"], "LEAK_CALLBACK": markers["callback"],
        "LEAK_AM_PASSWORD": markers["am_password"],
        "LEAK_SLACK_WEBHOOK": f"http://127.0.0.1:{dead}/services/T0/B0/{markers['slack_webhook']}",
    }  # fmt: skip
    if request.param == "sqlite":
        yield env, markers
        return
    import redis

    redis_url, pg_url = request.getfixturevalue("redis_url"), request.getfixturevalue("postgres_url")
    markers["database_url"], markers["redis_url"] = marker("database_url"), marker("redis_url")
    user_host, db = pg_url.split("://", 1)[1].rsplit("/", 1)
    user, host = user_host.split(":", 1)[0], user_host.split("@", 1)[1]
    env["EMPIRE_DATABASE_URL"] = f"postgresql://{user}:{markers['database_url']}@{host}/{db}"
    if not _can_log_in(env["EMPIRE_DATABASE_URL"]):
        pytest.skip("needs a PostgreSQL that trusts local connections, as scripts/services.sh starts it")
    user = f"leak_{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", user, "on", f">{markers['redis_url']}", "~*", "&*", "+@all")
    env["EMPIRE_REDIS_URL"] = f"redis://{user}:{markers['redis_url']}@{redis_url.split('://', 1)[1]}"
    try:
        yield env, markers
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


# -- running it -----------------------------------------------------------------------------------


def process_env(env: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EMPIRE_", "KUBE", "LEAK_"))}
    return {**clean, **env}


def cli(env: dict[str, str], *argv: str, timeout: float = 120) -> str:
    done = subprocess.run([sys.executable, "-c", MAIN, *argv], env=process_env(env), capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    return f"$ empire {' '.join(argv)} (exit {done.returncode})\n{done.stdout}{done.stderr}"


# Many commands in one process (the CLI's import time would otherwise dominate the test), each
# output on the same pipe as its log lines, after a header line naming the command.
MANY = """
import json, sys
from empire.cli import main
for argv in json.loads(sys.argv[1]):
    print("=== empire " + " ".join(argv), flush=True)
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    sys.stdout.flush(); sys.stderr.flush()
    print(f"(exit {code})", flush=True)
"""


def cli_many(env: dict[str, str], commands: list[list[str]], timeout: float = 300) -> dict[str, str]:
    """{command: its output and log lines}, all run in one process."""
    done = subprocess.run([sys.executable, "-c", MANY, json.dumps(commands)], env=process_env(env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stdout
    chunks = done.stdout.split("=== empire ")
    return {chunk.split("\n", 1)[0]: chunk for chunk in chunks[1:]} | {"(before the first command)": chunks[0]}


def database_url(env: dict[str, str]) -> str:
    url = env.get("EMPIRE_DATABASE_URL", f"sqlite:///{env['EMPIRE_DATA_DIR']}/empire.db")
    return url.replace("postgresql://", "postgresql+asyncpg://", 1).replace("sqlite://", "sqlite+aiosqlite://", 1)


def database_dump(env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, found by inspection (a new table is read without a change here)."""

    async def go() -> dict[str, list[dict[str, Any]]]:
        db = await Database.open(database_url(env), migrate=False)
        try:
            async with db.connect() as conn:
                names = await conn.run_sync(lambda c: inspect(c).get_table_names())
                meta = MetaData()
                await conn.run_sync(lambda c: meta.reflect(c, only=names))
                return {
                    n: [dict(r._mapping) for r in (await conn.execute(select(meta.tables[n]))).all()] for n in names
                }
        finally:
            await db.close()

    return anyio.run(go)


def wait_until(check: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)  # a real daemon in another process: wall-clock polling


def activity(env: dict[str, str]) -> dict[str, int]:
    """What the running daemon has done so far that could carry a secret into the database."""
    tables = database_dump(env)
    return {
        "decisions": len(tables.get("decisions", [])),
        "failed jobs": sum(1 for r in tables.get("jobs", []) if r["last_error"]),
        "failed notifications": len({r["receiver"] for r in tables.get("notifications", []) if r["last_error"]}) // 2,
    }


def leaks(text: str, markers: dict[str, str]) -> list[str]:
    return [name for name, m in markers.items() if m in text]


def test_no_secret_in_logs_endpoints_database_or_cli(deployment: tuple[dict[str, str], dict[str, str]],
                                                       tmp_path: Path) -> None:  # fmt: skip
    env, markers = deployment
    outputs: dict[str, str] = {}

    # 1. one tick against a dead Prometheus: "metric source unavailable" (connection refused)
    dead = {
        **env,
        "EMPIRE_PROMETHEUS__URL": f"http://prom:{markers['prometheus_url']}@127.0.0.1:{free_port()}",
        "EMPIRE_PROMETHEUS__PASSWORD": markers["prometheus_password"],
        "EMPIRE_PROMETHEUS__BEARER_TOKEN": markers["prometheus_bearer"],
        "EMPIRE_PROMETHEUS__RETRIES": "0",
    }
    outputs["run --once (dead Prometheus)"] = cli(dead, "run", "--once")
    assert "metric source unavailable" in outputs["run --once (dead Prometheus)"]

    # 2. a running daemon: Prometheus wants the URL's basic auth, answers one target, fails the other
    prom = FakePrometheus(basic=("prom", markers["prometheus_url"]))
    prom.series["sum(queue_ok)"] = 500.0  # fires queue-high (threshold 100)
    prom.failing.add("sum(queue_sick)")  # 503: metric source unavailable for `sick`
    with prom.serve() as url:
        live = {**env, "EMPIRE_PROMETHEUS__URL": url.replace("://", f"://prom:{markers['prometheus_url']}@"),
                "EMPIRE_PROMETHEUS__RETRIES": "0"}  # fmt: skip
        log = tmp_path / "daemon.log"
        with log.open("w") as fh:
            proc = subprocess.Popen([sys.executable, "-c", MAIN, "run"], env=process_env(live), stdout=fh,
                                    stderr=subprocess.STDOUT)  # fmt: skip
        try:
            base = f"http://127.0.0.1:{env['EMPIRE_HTTP__PORT']}"
            wait_until(lambda: log.read_text().count("metric source unavailable") >= 1, "the unavailable warning")
            wait_until(lambda: all(activity(env).values()), "decisions, failed jobs and failed notifications")
            for path in ("/status", "/metrics", "/alerts?state=all", "/healthz", "/readyz"):
                outputs[path] = httpx.get(base + path, timeout=10).text
            assert '"ok"' in outputs["/status"] and "queue-high" in outputs["/alerts?state=all"]
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        outputs["run (live)"] = log.read_text()
        assert code == 0, outputs["run (live)"]
        assert prom.queries, "the daemon never authenticated to the fake Prometheus"

    # 3. the state database, every column of every table
    tables = database_dump(live)
    assert {"decisions", "actions", "jobs", "notifications", "policy_versions"} <= set(tables)
    for name, rows in tables.items():
        outputs[f"table {name}"] = "\n".join(repr(r) for r in rows)

    # 4. every read-only CLI command
    commands = [[a.format(policy=env["EMPIRE_POLICY_FILE"]) for a in argv] for runs in READS.values() for argv in runs]
    outputs.update(cli_many(live, commands))
    assert len(outputs) > len(commands)
    assert "prometheus http://prom:***@127.0.0.1" in outputs["explain sick"]  # masked, still useful

    found = {where: leaks(text, markers) for where, text in outputs.items() if leaks(text, markers)}
    assert found == {}, "\n\n".join(f"{w}: {names}\n{outputs[w][:3000]}" for w, names in found.items())
