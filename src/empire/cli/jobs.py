"""`empire jobs submit|list|show|retry|cancel|resolve`: the generation job queue, as the state DB holds it.

`submit` queues one job outside the planner's cadence, checked against the policy as
`POST /v1/jobs` checks it (`pools.submit`); the dispatcher of a running agent picks it up. Writes
are recorded in the audit log (`empire audit`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from empire.agent.pools.queue import RESOLUTIONS
from empire.cli.common import MAX_ID, count
from empire.errors import ConfigError, NotFoundError

STATES = ("queued", "leased", "submitting", "submitted", "succeeded", "failed", "dead", "cancelled", "deferred",
          "unknown_outcome")  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "jobs",
        help="list, inspect, retry and cancel generation jobs",
        description="Generation jobs in the durable queue (EMPIRE_DATABASE_URL).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire jobs submit --persona luna --prompt "slow synthwave, rain" --key luna-rain-1
  empire jobs submit --provider suno --prompt "lofi beat" --priority high
  empire jobs list                          newest 50 jobs
  empire jobs list --state dead             the dead-letter queue, with each job's last error
  empire jobs show 42                       one job in full (by id or idempotency key)
  empire jobs retry 42 57                   dead/failed/cancelled jobs back in the queue, attempts reset
  empire jobs cancel 42                     stop a job; one already submitted keeps its cost in the
                                            budget (the provider may still bill it)
  empire jobs list --state unknown_outcome  jobs that may or may not have been generated (a crash while
                                            submitting to a provider that ignores idempotency keys)
  empire jobs resolve 42 --as done          you found it at the provider (or: failed, resubmit)""",
    )
    psub = p.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND")
    psub.required = True
    sb = psub.add_parser("submit", help="queue one generation job (idempotent per --key)")
    sb.add_argument("--prompt", required=True)
    sb.add_argument("--persona", help="a persona in the policy: its providers, first genre and priority by default")
    sb.add_argument("--provider", action="append", dest="providers", metavar="NAME",
                    help="provider in preference order (repeat for fallbacks); default: the persona's")  # fmt: skip
    sb.add_argument("--genre")
    sb.add_argument("--title")
    sb.add_argument("--priority", choices=("high", "normal", "low"))
    sb.add_argument("--key", help="idempotency key: the same key again returns the same job (default: a new one)")
    sb.add_argument("--policy", metavar="FILE", help="policy YAML (default: EMPIRE_POLICY_FILE or the example)")
    sb.add_argument("--format", choices=("text", "json"), default="text")
    sb.set_defaults(func=submit)
    ls = psub.add_parser("list", help="list jobs, newest first")
    ls.add_argument("--state", choices=STATES)
    ls.add_argument("--persona")
    ls.add_argument("--provider")
    ls.add_argument("--limit", type=count(1, 100_000), default=50)
    ls.add_argument("--format", choices=("text", "json"), default="text")
    ls.set_defaults(func=list_jobs)
    sh = psub.add_parser("show", help="one job in full")
    sh.add_argument("job", help="job id or idempotency key")
    sh.set_defaults(func=show)
    for name, helptext, func in (
        ("retry", "put dead, failed, cancelled or deferred jobs back in the queue", retry),
        ("cancel", "cancel jobs that are not finished", cancel),
    ):
        s = psub.add_parser(name, help=helptext)
        s.add_argument("jobs", nargs="+", metavar="ID", type=count(1))
        s.set_defaults(func=func)
    rs = psub.add_parser("resolve", help="decide an unknown_outcome job: done, failed or resubmit (audited)")
    rs.add_argument("jobs", nargs="+", metavar="ID", type=count(1))
    rs.add_argument("--as", dest="outcome", required=True, choices=RESOLUTIONS,
                    help="done: it was generated (succeeded); failed: it was not and should not be (dead); "
                    "resubmit: it was not, send it again under the same key")  # fmt: skip
    rs.add_argument("--note", default="", help="why (kept in the job and the audit log)")
    rs.set_defaults(func=resolve)


def _run(fn: Any, *, readonly: bool = False) -> Any:
    from empire.cli.common import with_database
    from empire.state.jobs import SqlJobQueue

    return with_database(lambda db: fn(SqlJobQueue(db)), readonly=readonly)


def submit(args: argparse.Namespace) -> int:
    import uuid

    from empire.agent.clock import SystemClock
    from empire.agent.pools.context import open_pools
    from empire.agent.pools.submit import KEY_PREFIX, JobSpec, new_job
    from empire.agent.pools.submit import submit as enqueue
    from empire.cli.tokens import audit_cli
    from empire.config.settings import load_settings

    key = args.key if args.key is not None else uuid.uuid4().hex
    spec = JobSpec(args.prompt, args.persona, tuple(args.providers or ()), args.genre, args.title, args.priority)

    async def go() -> tuple[Any, bool]:
        from empire.cli.tokens import cli_actor

        async with open_pools(load_settings(), args.policy) as pc:
            job = new_job(spec, key, pc.policy, cli_actor())
            stored, created = await enqueue(pc.queue, job, SystemClock().now())
            await audit_cli(pc.db, "jobs.submit", f"job/{stored.id}", {"key": key, "created": created})
            return stored, created

    import anyio

    job, created = anyio.run(go)
    if args.format == "json":
        print(json.dumps({**job.describe(), "created": created}, indent=2, default=str))
    elif created:
        print(f"job {job.id} queued for {job.provider} (key {job.idempotency_key.removeprefix(KEY_PREFIX)})")
    else:
        print(f"job {job.id} exists already for key {key!r}: {job.state.value} (nothing new was queued)")
    return 0


def list_jobs(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    jobs = _run(lambda q: q.list(args.state, args.persona, args.limit, args.provider), readonly=True)
    if args.format == "json":
        print(json.dumps([j.describe() for j in jobs], indent=2))
        return 0
    if not jobs:
        print("no jobs")
        return 0
    print(
        f"{'ID':>6}  {'STATE':<9}  {'PRIO':<6}  {'PERSONA':<16}  {'PROVIDER/ACCOUNT':<24}  {'TRIES':>5}  UPDATED / ERROR"
    )
    for j in jobs:
        where = f"{j.provider}/{j.account}" if j.account else j.provider
        tail = j.updated_at.strftime("%Y-%m-%d %H:%M:%S")
        if j.last_error and j.state.value != "succeeded":  # a waiting job too: why it was re-routed
            tail += f"  [{j.error_class}] {j.last_error[:100]}"
        prio = ("high", "normal", "low")[j.priority] if j.priority in (0, 1, 2) else str(j.priority)
        print(f"{j.id:>6}  {j.state.value:<9}  {prio:<6}  {(j.persona or '-')[:16]:<16}  {where[:24]:<24}  "
              f"{j.attempts:>5}  {tail}")  # fmt: skip
    return 0


def show(args: argparse.Namespace) -> int:
    # not isdigit(): "¹" is a digit int() refuses
    ref: int | str = int(args.job) if args.job.isdecimal() and int(args.job) <= MAX_ID else args.job
    job = _run(lambda q: q.get(ref), readonly=True)
    if job is None:
        raise NotFoundError(f"no job {args.job!r}")
    print(json.dumps(job.describe(), indent=2, default=str))
    return 0


def _each(args: argparse.Namespace, verb: str) -> int:
    from empire.agent.clock import SystemClock
    from empire.cli.tokens import audit_cli

    async def act(q: Any, job_id: int, now: Any) -> bool:
        if verb == "resolve":
            return bool(await q.resolve(job_id, args.outcome, args.note or "by the CLI", now))
        return bool(await (q.retry(job_id, now) if verb == "retry" else q.cancel(job_id, now)))

    async def go(q: Any) -> list[tuple[int, bool, Any]]:
        now = SystemClock().now()
        out = []
        for job_id in args.jobs:
            job = await q.get(job_id)
            ok = bool(job) and await act(q, job_id, now)
            if job is not None:
                detail = {"done": ok, "was": job.state.value}
                if verb == "resolve":
                    detail.update(outcome=args.outcome, note=args.note)
                await audit_cli(q.db, f"jobs.{verb}", f"job/{job_id}", detail)
            out.append((job_id, ok, job))
        return out

    failed = 0
    for job_id, ok, job in _run(go):
        if job is None:
            print(f"job {job_id}: not found")
            failed += 1
        elif ok and verb == "retry":
            print(f"job {job_id}: queued again")
        elif ok and verb == "resolve":
            print(f"job {job_id}: resolved as {args.outcome}")
        elif ok:
            billed = job.state.value == "submitted"
            note = f" (submitted to {job.provider}: its cost stays counted against the budget)" if billed else ""
            print(f"job {job_id}: cancelled{note}")
        else:
            print(f"job {job_id}: is {job.state.value}, cannot {verb}")
            failed += 1
    return 1 if failed else 0


def retry(args: argparse.Namespace) -> int:
    return _each(args, "retry")


def cancel(args: argparse.Namespace) -> int:
    return _each(args, "cancel")


def resolve(args: argparse.Namespace) -> int:
    return _each(args, "resolve")
