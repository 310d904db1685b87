"""`empire silence add|list|expire`: mute alerts for a while, in the state DB the daemon reads.

A silence is matchers (Alertmanager syntax: `alertname="queue-anomaly"`, `target=~"api|web"`,
`severity!="critical"`) plus a time window. Matching alerts keep firing on the dashboard but send
no notifications until the silence ends; the daemon picks up a new silence within seconds, from any
machine that reaches the same database. As in Alertmanager, a silence needs a comment, and at least
one matcher that does not match an empty label (so `alertname=~".*"` alone cannot mute everything).
"""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import UTC, datetime
from typing import Any

from empire.cli.common import print_table, utc_time
from empire.errors import ConfigError

EPILOG = """examples:
  empire silence add 'alertname="queue-anomaly"' --duration 2h --comment "queue migration, ticket OPS-12"
  empire silence add 'target="api"' 'severity!="critical"' --until 2026-03-01T18:00Z --comment deploy
  empire silence list            # active and pending;  --all adds expired ones
  empire silence expire 3f2a9c1e # by id or a unique prefix of it"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "silence", help="mute matching alerts for a while", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
    )  # fmt: skip
    psub = p.add_subparsers(dest="silence_command", metavar="SUBCOMMAND")
    psub.required = True
    a = psub.add_parser(
        "add", help="create a silence", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    a.add_argument("matchers", nargs="+", metavar="MATCHER", help='label matcher, e.g. alertname="queue-anomaly"')
    when = a.add_mutually_exclusive_group()
    when.add_argument("--duration", "-d", default=None, help="how long, e.g. 30m, 2h, 1d (default 1h)")
    when.add_argument("--until", default=None, help="end time, ISO 8601 (UTC unless an offset is given)")
    a.add_argument("--start", default=None, help="start time, ISO 8601 (default: now)")
    a.add_argument("--comment", "-c", required=True, help="why (shown with the silence)")
    a.add_argument("--author", default=None, help="who (default: the current user)")
    a.set_defaults(func=add)
    ls = psub.add_parser("list", help="list active and pending silences")
    ls.add_argument("--all", action="store_true", help="include expired silences")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(func=list_)
    e = psub.add_parser("expire", help="end a silence now")
    e.add_argument("id", help="silence id or a unique prefix")
    e.set_defaults(func=expire)


def parse_time(text: str, what: str) -> datetime:
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(value)
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ConfigError(f"{what}: {text[:40]!r} is not an ISO 8601 time (e.g. 2026-03-01T18:00Z)") from None


def _run(fn: Any, *, readonly: bool = False) -> Any:
    from empire.cli.common import with_database
    from empire.state.alerts import SqlAlertStore

    return with_database(lambda db: fn(SqlAlertStore(db)), readonly=readonly)


def add(args: argparse.Namespace) -> int:
    from empire.agent.alerting.muting import check_silence
    from empire.policies.durations import MAX_DURATION, format_duration, parse_duration

    now = datetime.now(UTC)
    start = parse_time(args.start, "--start") if args.start else now
    if args.until:
        end = parse_time(args.until, "--until")
    else:
        try:
            end = start + parse_duration(args.duration or "1h")
        except ValueError as exc:
            raise ConfigError(f"--duration: {exc}") from None
        except OverflowError:
            raise ConfigError("--start/--duration: the silence would end after the year 9999") from None
    if end - now > MAX_DURATION:
        raise ConfigError(f"the silence would end more than {format_duration(MAX_DURATION)} (ten years) from now: "
                          "check --start/--duration/--until")  # fmt: skip
    if end <= max(start, now):
        raise ConfigError("the silence would end before it starts (or in the past): check --duration/--until")
    if not args.comment.strip():
        raise ConfigError("--comment must say why")
    matchers = check_silence(args.matchers, start, end, now, args.comment)
    author = args.author or getpass.getuser()

    async def go(store: Any) -> Any:
        from empire.cli.tokens import audit_cli

        added = await store.add_silence(matchers, start, end, author, args.comment.strip(), now)
        await audit_cli(store.db, "silences.add", f"silence/{added.id}", {"matchers": matchers,
                                                                         "ends_at": end.isoformat()})  # fmt: skip
        return added

    s = _run(go)
    print(f"silence {s.id} added: {' '.join(s.matchers)} from {utc_time(s.starts_at)} until {utc_time(s.ends_at)} "
          f"({format_duration(s.ends_at - s.starts_at)}) by {s.created_by}")  # fmt: skip
    return 0


def list_(args: argparse.Namespace) -> int:
    from empire.agent.alerting.api import silence_json

    now = datetime.now(UTC)
    silences = _run(lambda store: store.silences(now, include_expired=args.all), readonly=True)
    if args.format == "json":
        print(json.dumps([silence_json(s, now) for s in silences], indent=2))
        return 0
    if not silences:
        print("no silences" + ("" if args.all else " (active or pending; --all shows expired ones)"))
        return 0
    rows = [("ID", "STATE", "STARTS", "ENDS", "BY", "MATCHERS", "COMMENT")]
    rows += [(s.id[:8], s.state(now), utc_time(s.starts_at), utc_time(s.ends_at), s.created_by, " ".join(s.matchers),
              s.comment) for s in silences]  # fmt: skip
    print_table(rows)
    return 0


def expire(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)

    async def go(store: Any) -> Any:
        from empire.cli.tokens import audit_cli

        expired = await store.expire_silence(args.id, now)
        await audit_cli(store.db, "silences.expire", f"silence/{expired.id}", {})
        return expired

    s = _run(go)
    print(f"silence {s.id} expired at {utc_time(s.ends_at)}: {' '.join(s.matchers)}")
    return 0
