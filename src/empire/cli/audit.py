"""`empire audit`: who changed what, when, and with what result, newest first.

Every write through the HTTP API (jobs submitted, cancelled and retried, content figures
ingested, silences added and expired; refused ones with the status they got), every token created
or revoked, policy applies and rejections, and the CLI's own writes, from the state database.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from empire.cli.common import count, print_table, utc_time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit", help="the audit log: who changed what, when, with what result", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire audit                              the newest 50 entries
  empire audit --actor ci-submitter         one token's writes
  empire audit --action jobs.submit --last 200 --format json""",
    )  # fmt: skip
    p.add_argument("--last", type=count(1, 100_000), default=50, metavar="N")
    p.add_argument("--actor", help="only this actor (a token's name, cli:<user>, a replica)")
    p.add_argument("--action", help="only this action (e.g. jobs.submit, content.access, tokens.create)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=show)


def show(args: argparse.Namespace) -> int:
    from empire.cli.common import with_database
    from empire.state.store import SqlStateStore

    async def go(db: Any) -> Any:
        return await SqlStateStore(db).recent_audit(limit=args.last, actor=args.actor, action=args.action)

    rows = with_database(go)
    if args.format == "json":
        print(json.dumps([{"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action,
                           "subject": r.subject, "details": r.details} for r in rows], indent=2))  # fmt: skip
        return 0
    if not rows:
        print("no audit entries")
        return 0
    table = [("AT", "ACTOR", "ACTION", "SUBJECT", "RESULT")]
    for r in rows:
        status = r.details.get("status")
        result = str(status) if status is not None else ", ".join(f"{k}={v}" for k, v in list(r.details.items())[:3])
        table.append((utc_time(r.at), r.actor, r.action, r.subject, result[:100]))
    print_table(table)
    return 0
