"""`empire policy validate|show|schema`: check and inspect policy files without running anything."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from empire.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "policy",
        help="validate, show and describe policy files",
        description="Work with policy YAML files (the same format as an EmpireConfig spec).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire policy validate policy.yaml staging.yaml
  empire policy show policy.yaml --format json
  empire policy schema > policy.schema.json   # for editor completion (yaml-language-server)""",
    )
    psub = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    psub.required = True

    v = psub.add_parser(
        "validate",
        help="check policy files; exit 0 when all are valid, 2 otherwise",
        description="Validate each FILE. Prints one 'file:line: path: message' line per problem.",
    )
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("-q", "--quiet", action="store_true", help="print nothing when valid")
    v.set_defaults(func=validate)

    s = psub.add_parser(
        "show",
        help="print the effective policy with every default filled in",
        description="Print the effective policy: the file as validated, with defaults made explicit.",
    )
    s.add_argument("file", nargs="?", metavar="FILE", help="default: the shipped example policy")
    s.add_argument("--format", choices=("yaml", "json"), default="yaml")
    s.set_defaults(func=show)

    sc = psub.add_parser("schema", help="print the policy's JSON Schema", description="Print the JSON Schema.")
    sc.set_defaults(func=schema)


def validate(args: argparse.Namespace) -> int:
    from empire.policies.loading import load_policy

    failed = False
    for path in args.files:
        try:
            loaded = load_policy(path)
        except ConfigError as exc:  # a PolicyError (one line per problem) or an unreadable file
            failed = True
            print(str(exc), file=sys.stderr)
            continue
        if not args.quiet:
            pol = loaded.policy
            print(
                f"{path}: valid (version {loaded.version}: {len(pol.targets)} targets, "
                f"{len(pol.providers)} providers, {len(pol.personas)} personas, "
                f"{len(pol.storage.tiers)} tiers, {len(pol.alerting.rules)} alert rules)"
            )
    return 2 if failed else 0


def show(args: argparse.Namespace) -> int:
    from empire.policies.loading import default_policy_path, load_policy

    loaded = load_policy(args.file or default_policy_path())
    body = loaded.policy.model_dump(mode="json", by_alias=True)
    if args.format == "json":
        print(json.dumps(body, indent=2))
    else:
        print(f"# effective policy from {loaded.source}, version {loaded.version}")
        print(yaml.safe_dump(body, sort_keys=False, width=110), end="")
    return 0


def schema(args: argparse.Namespace) -> int:
    from empire.policies.schema import policy_json_schema

    print(json.dumps(policy_json_schema(), indent=2))
    return 0
