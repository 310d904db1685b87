"""`empire version`: print the installed version."""

from __future__ import annotations

import argparse
import platform

from empire import __version__


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "version", help="print the version", description="Print empire's version.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  empire version                         # e.g. empire 0.1.0 (Python 3.11.7)",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(f"empire {__version__} (Python {platform.python_version()})")
    return 0
