"""`empire tokens create|list|revoke`: named bearer tokens for the agent's HTTP API (/v1).

A token is shown once, when it is created; the state database keeps only a digest of it, so a
lost token is revoked and replaced, never recovered. Scopes: read (every GET), write (submit,
cancel and retry jobs, ingest content figures, add and expire silences; includes read), admin
(the audit log; includes write). The agent sees a new or revoked token within 5 seconds.
Creating and revoking are written to the audit log (`empire audit`).
"""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import UTC, datetime
from typing import Any

from empire.cli.common import print_table, utc_time
from empire.errors import ConfigError, NotFoundError

EPILOG = """examples:
  empire tokens create ci-submitter --scope write          prints the token once
  empire tokens create grafana --scope read --expires 90d
  empire tokens list                                       names, scopes, states (never the tokens)
  empire tokens revoke ci-submitter
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9464/v1/jobs"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokens", help="create, list and revoke API tokens", description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    psub = p.add_subparsers(dest="tokens_command", metavar="SUBCOMMAND")
    psub.required = True
    c = psub.add_parser("create", help="create a token and print it (once)")
    c.add_argument("name", help="who or what will use it (unique among tokens not revoked)")
    c.add_argument("--scope", choices=("read", "write", "admin"), required=True)
    c.add_argument("--expires", metavar="DURATION", help="e.g. 90d (default: never)")
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.set_defaults(func=create)
    ls = psub.add_parser("list", help="list tokens (not the tokens themselves)")
    ls.add_argument("--all", action="store_true", help="include revoked tokens")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(func=list_)
    r = psub.add_parser("revoke", help="revoke a token by name")
    r.add_argument("name")
    r.set_defaults(func=revoke)


def _name(text: str) -> str:
    name = text.strip()
    if not name or len(name) > 128 or not name.isprintable():
        raise ConfigError("token name: 1 to 128 printable characters")
    return name


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a bare container
        return "cli"


async def audit_cli(db: Any, action: str, subject: str, details: dict[str, Any]) -> None:
    """An audit row for a change the CLI made (the HTTP API's are written by its gate)."""
    from empire.agent.records import AuditRecord
    from empire.state.store import SqlStateStore

    await SqlStateStore(db).audit(AuditRecord(datetime.now(UTC), cli_actor(), action, subject, details))


def create(args: argparse.Namespace) -> int:
    from empire.agent.api.auth import Scope, TokenRecord, new_token
    from empire.cli.common import with_database
    from empire.policies.durations import parse_duration
    from empire.state.tokens import SqlTokenStore

    name = _name(args.name)
    now = datetime.now(UTC)
    expires = None
    if args.expires:
        try:
            expires = now + parse_duration(args.expires)
        except ValueError as exc:
            raise ConfigError(f"--expires: {exc}") from None
    token, token_id, digest = new_token()
    record = TokenRecord(token_id, name, (Scope(args.scope),), digest, now, cli_actor(), expires)

    async def go(db: Any) -> None:
        await SqlTokenStore(db).add(record)
        await audit_cli(db, "tokens.create", f"token/{name}", {"scope": args.scope, "id": token_id,
                                                             "expires_at": expires.isoformat() if expires else None})  # fmt: skip

    with_database(go)
    if args.format == "json":
        print(json.dumps({"name": name, "scope": args.scope, "token": token,
                          "expires_at": expires.isoformat() if expires else None}))  # fmt: skip
    else:
        print(token)
        print(f"token {name!r} (scope {args.scope}{', expires ' + utc_time(expires) if expires else ''}) created; "
              "it is not shown again: keep it in a secret store", file=__import__("sys").stderr)  # fmt: skip
    return 0


def list_(args: argparse.Namespace) -> int:
    from empire.cli.common import with_database
    from empire.state.tokens import SqlTokenStore

    now = datetime.now(UTC)
    rows = with_database(lambda db: SqlTokenStore(db).list(include_revoked=args.all))
    if args.format == "json":
        print(json.dumps([{"name": r.name, "id": r.id, "scopes": [s.value for s in r.scopes], "state": r.state(now),
                           "created_at": r.created_at.isoformat(), "created_by": r.created_by,
                           "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                           "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None} for r in rows],
                         indent=2))  # fmt: skip
        return 0
    if not rows:
        print("no tokens" + ("" if args.all else " (--all shows revoked ones)"))
        return 0
    table = [("NAME", "ID", "SCOPE", "STATE", "CREATED", "EXPIRES", "BY")]
    table += [(r.name, r.id, ",".join(s.value for s in r.scopes), r.state(now), utc_time(r.created_at),
               utc_time(r.expires_at), r.created_by) for r in rows]  # fmt: skip
    print_table(table)
    return 0


def revoke(args: argparse.Namespace) -> int:
    from empire.cli.common import with_database
    from empire.state.tokens import SqlTokenStore

    name = _name(args.name)

    async def go(db: Any) -> Any:
        found = await SqlTokenStore(db).revoke(name, datetime.now(UTC))
        if found is not None:
            await audit_cli(db, "tokens.revoke", f"token/{name}", {"id": found.id})
        return found

    if with_database(go) is None:
        raise NotFoundError(f"no active token named {name!r} (see 'empire tokens list')")
    print(f"token {name!r} revoked (the agent refuses it within 5 seconds)")
    return 0
