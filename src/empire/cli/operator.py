"""`empire operator run|crd`: the Kubernetes operator for EmpireConfig, and its CRD."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from empire.cli.common import count, number
from empire.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "operator",
        help="run the EmpireConfig operator, or print its CRD",
        description=(
            "The Kubernetes operator: validates each EmpireConfig spec as a policy, hands it to the agent "
            "through the state DB, and reports conditions, Events and the agent's decisions in its status."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire operator crd > deploy/crds/empireconfigs.yaml                 regenerate the CRD after a policy change
  empire operator crd | kubectl apply -f -              install or upgrade the CRD
  empire operator example | kubectl apply -f -          an EmpireConfig with the shipped example policy
  empire operator run --namespace empire                 in a pod: several replicas, one active (kopf peering)
  empire operator run --namespace empire --standalone    one replica, no KopfPeering object needed""",
    )
    psub = p.add_subparsers(dest="operator_command", metavar="SUBCOMMAND")
    psub.required = True

    c = psub.add_parser("crd", help="print the EmpireConfig CustomResourceDefinition (YAML)",
                        description="Print the CRD generated from the policy schema.")  # fmt: skip
    c.add_argument("--check", metavar="FILE", help="exit 1 when FILE differs from the generated CRD")
    c.set_defaults(func=crd)

    e = psub.add_parser("example", help="print an EmpireConfig with the shipped example policy as its spec",
                        description="Print the example EmpireConfig (deploy/empireconfig.yaml).")  # fmt: skip
    e.add_argument("--name", default="empire")
    e.add_argument("--namespace", default="empire")
    e.set_defaults(func=example)

    r = psub.add_parser(
        "run",
        help="run the operator until SIGTERM",
        description="Watch EmpireConfigs and hand their policy to the agent through the state DB "
        "(EMPIRE_DATABASE_URL, the same database as `empire run`).",
    )
    r.add_argument("-n", "--namespace", dest="namespaces", action="append", default=[], metavar="NS",
                   help="namespace to watch (repeatable; default: $POD_NAMESPACE, else 'default')")  # fmt: skip
    r.add_argument("-A", "--all-namespaces", action="store_true",
                   help="watch every namespace (needs a ClusterRole instead of the shipped Role)")  # fmt: skip
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true", help="no peering: only run one replica like this")
    mode.add_argument("--peering", default="empire", metavar="NAME",
                      help="KopfPeering object shared by the replicas (default: empire)")  # fmt: skip
    r.add_argument("--priority", type=count(-(2**31), 2**31 - 1), metavar="N",
                   help="peering priority; the highest live replica is active (default: random per process)")  # fmt: skip
    r.add_argument("--status-interval", type=number(1, 86_400), default=30.0, metavar="SECONDS",
                   help="how often the agent's decisions are copied into the status (default: 30)")  # fmt: skip
    r.add_argument("--liveness", metavar="URL", help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    r.add_argument("--metrics-port", type=count(0, 65535), default=0, metavar="PORT",
                   help="serve the operator's Prometheus metrics on PORT at /metrics (default 0: off; "
                        "the manifests use 9465)")  # fmt: skip
    r.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDR",
                   help="address of the metrics port (default 127.0.0.1; 0.0.0.0 in a pod)")  # fmt: skip
    r.add_argument("--server", metavar="URL",
                   help="API server URL without TLS verification (e.g. `kubectl proxy`); default: in-cluster or kubeconfig")  # fmt: skip
    r.set_defaults(func=run)


def crd(args: argparse.Namespace) -> int:
    from empire.operator.crd import crd_yaml

    text = crd_yaml()
    if args.check:
        path = Path(args.check)
        from empire.boundedio import MAX_YAML_BYTES, read_bounded_text

        current = read_bounded_text(path, MAX_YAML_BYTES, "CRD file")
        if current != text:
            print(f"{path} is out of date: run `empire operator crd > {path}`", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    sys.stdout.write(text)
    return 0


def example(args: argparse.Namespace) -> int:
    from empire.operator.crd import example_config_yaml

    sys.stdout.write(example_config_yaml(args.name, args.namespace))
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        import kopf  # noqa: F401
    except ImportError:
        raise ConfigError("the operator needs kopf: pip install 'empire[operator]'") from None
    from empire.config.settings import load_settings
    from empire.operator.handlers import OperatorConfig
    from empire.operator.runner import run_operator

    settings = load_settings()
    if args.status_interval <= 0:
        raise ConfigError("--status-interval must be positive")
    if args.all_namespaces and args.namespaces:
        raise ConfigError("give either --namespace or --all-namespaces, not both")
    if not getattr(args, "verbose", 0):
        logging.getLogger().setLevel(settings.log_level)
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=True)
    if args.metrics_port:
        from empire.operator.metrics import serve_metrics

        serve_metrics(args.metrics_port, args.metrics_address, registry)
        logging.getLogger(__name__).info("operator metrics on http://%s:%d/metrics", args.metrics_address,
                                         args.metrics_port)  # fmt: skip
    config = OperatorConfig(database_url=settings.database_url_value, status_interval=args.status_interval,
                            server=args.server, registry=registry)  # fmt: skip
    run_operator(
        config,
        namespaces=tuple(args.namespaces),
        clusterwide=args.all_namespaces,
        standalone=args.standalone,
        peering_name=args.peering,
        priority=args.priority,
        liveness_endpoint=args.liveness,
    )
    return 0
