"""`empire config show`: the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import json

VARIABLES = """settings (environment; nested with __, or a YAML file named by EMPIRE_CONFIG_FILE):
  EMPIRE_DATA_DIR                 SQLite DB, local tiers, file lock (default ~/.local/share/empire)
  EMPIRE_DATABASE_URL             sqlite:///path or postgresql://user:pass@host/db
  EMPIRE_REDIS_URL                redis://host:6379/0: shared rate limits and leader lease
  EMPIRE_POLICY_FILE              policy YAML (default: the shipped example)
  EMPIRE_PROMETHEUS__URL          e.g. http://prometheus:9090 (with __BEARER_TOKEN, __USERNAME, __PASSWORD)
  EMPIRE_KUBERNETES__MODE         auto | in_cluster | kubeconfig | disabled
  EMPIRE_HTTP__HOST, __PORT       /metrics /healthz /readyz /status (default 127.0.0.1:9464)
  EMPIRE_INGEST_TOKEN             bearer token for the write endpoints"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="show the effective settings",
        description="Show the settings read from EMPIRE_* variables and EMPIRE_CONFIG_FILE.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  empire config show                     # the effective settings as JSON, secrets masked\n"
        "  EMPIRE_DATABASE_URL=postgresql+asyncpg://empire@db/empire empire config show\n\n" + VARIABLES,
    )
    psub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    psub.required = True
    s = psub.add_parser("show", help="print the effective settings as JSON, secrets masked")
    s.set_defaults(func=show)


def show(args: argparse.Namespace) -> int:
    from empire.config.settings import load_settings

    print(json.dumps(load_settings().describe(), indent=2, default=str))
    return 0
