"""`empire alerts list|outbox`: what fires, what is muted, and what is waiting to be delivered.

Reads the state DB the daemon writes (the same data as `GET /alerts`), so it works from any machine
that reaches the database, also while the daemon is down.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from empire.cli.common import count, print_table, utc_time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alerts", help="list alerts and the notification outbox", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire alerts list                     # firing now
  empire alerts list --state all --target api
  empire alerts outbox                   # notifications waiting for a receiver (and why)""",
    )  # fmt: skip
    psub = p.add_subparsers(dest="alerts_command", metavar="SUBCOMMAND")
    psub.required = True
    ls = psub.add_parser("list", help="list alerts (default: firing)")
    ls.add_argument("--state", choices=("firing", "resolved", "all"), default="firing")
    ls.add_argument("--target", default=None)
    ls.add_argument("--limit", type=count(1, 100_000), default=50)
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(func=list_)
    ob = psub.add_parser("outbox", help="notifications queued for delivery, and failed ones")
    ob.add_argument("--state", choices=("pending", "failed", "sent", "all"), default="pending")
    ob.add_argument("--limit", type=count(1, 100_000), default=50)
    ob.set_defaults(func=outbox)


def _run(fn: Any) -> Any:
    """Both `alerts` commands only read."""
    from empire.cli.common import with_database
    from empire.state.alerts import SqlAlertStore

    return with_database(lambda db: fn(SqlAlertStore(db)), readonly=True)


def list_(args: argparse.Namespace) -> int:
    from empire.agent.alerting.muting import mute_reasons

    now = datetime.now(UTC)
    state = None if args.state == "all" else args.state

    async def go(store: Any) -> tuple[list[Any], list[Any], dict[str, int]]:
        return (await store.list_alerts(state, args.target, args.limit), await store.silences(now),
                await store.outbox_depth())  # fmt: skip

    alerts, silences, depth = _run(go)
    silenced = mute_reasons(((a.fingerprint, a.labels, a.firing) for a in alerts), (), silences, now)
    if args.format == "json":
        print(json.dumps([{**a.to_json(), "silenced": a.fingerprint in silenced} for a in alerts], indent=2))
        return 0
    if not alerts:
        print(f"no {args.state if state else ''} alerts".replace("  ", " "))
    else:
        rows = [("SEVERITY", "ALERT", "TARGET", "STATE", "SINCE", "SUMMARY")]
        for a in alerts:
            status = a.status + (" (silenced)" if a.fingerprint in silenced and a.firing else "")
            rows.append((a.severity, a.rule, a.labels.get("target", "-"), status, utc_time(a.starts_at),
                         a.annotations.get("summary", "")))  # fmt: skip
        print_table(rows)
    if depth:
        print("outbox: " + ", ".join(f"{k} {v} pending" for k, v in sorted(depth.items())))
    return 0


def outbox(args: argparse.Namespace) -> int:
    items = _run(lambda store: store.notifications(None, max(args.limit * 4, 200)))
    if args.state != "all":
        items = [i for i in items if i.state == args.state]
    items = items[: args.limit]
    if not items:
        print(f"no {'' if args.state == 'all' else args.state + ' '}notifications")
        return 0
    for i in items:
        err = f"  last error: {i.last_error}" if i.last_error else ""
        when = f"sent {utc_time(i.sent_at)}" if i.sent_at else f"next try {utc_time(i.next_attempt_at)}"
        print(f"#{i.id} {i.state:7} {i.receiver:16} {i.payload.get('status', '?'):8} attempts={i.attempts} "
              f"queued {utc_time(i.created_at)} {when}  {i.group_key}{err}")  # fmt: skip
    return 0
