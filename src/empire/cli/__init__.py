"""The ``empire`` command line.

One module per command group (``empire.cli.<group>``), each exposing ``register(subparsers)``;
this module only assembles them and turns classified errors into one-line messages and exit codes.
Command modules import heavy libraries (scikit-learn, SQLAlchemy) inside their handlers so that
``empire --help`` stays fast.

Exit codes: 0 success, 1 the command ran but found a problem (for example a failed check),
2 bad input or configuration (``ConfigError``/``PermanentError``), 3 a temporary failure
(database unreachable, peer down): try again later. A reader that stops early (``empire jobs list
| head -1``) is not a failure: the rest of the output is dropped quietly and the exit code is 0.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from empire import logrepeat
from empire.errors import EmpireError, TemporaryError

__all__ = ["build_parser", "main"]

# Command groups in the order `empire --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "explain",
    "backtest",
    "policy",
    "config",
    "db",
    "forecast",
    "detect",
    "jobs",
    "pools",
    "content",
    "tiers",
    "report",
    "alerts",
    "silence",
    "tokens",
    "audit",
    "operator",
    "version",
)

EPILOG = """\
examples:
  empire backtest                        replay 62 days of real traffic: HPA vs empire vs perfect foresight
  empire run                             the agent on the embedded default (SQLite, no cluster: dry run)
  empire run --policy policy.yaml        ... with your policy (hot-reloaded; EMPIRE_* settings for peers)
  empire explain generator --last 5      why it scaled generator: every reason and clamp, from the journal
  empire policy validate policy.yaml     check a policy file; one 'file:line: path: message' per error
  empire jobs list --state dead          generation jobs that gave up, with their last error
  empire tiers plan                      what would move between storage tiers, and the monthly saving

settings come from EMPIRE_* environment variables (see 'empire config show')."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="empire",
        description="Autonomous controller for an AI-music operation: scale, generate, retier, alert.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"empire.cli.{name}").register(sub)
    _inherit_examples(parser, "empire")
    return parser


def _inherit_examples(parser: argparse.ArgumentParser, path: str) -> None:
    """Give each subcommand without its own examples its group's: the lines that name it, or all.

    Why: `empire jobs retry --help` should teach as much as `empire jobs --help`, and the examples
    are written once, per group."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, child in action.choices.items():
            child_path = f"{path} {name}"
            if child.epilog is None and parser.epilog and path != "empire":
                lines = parser.epilog.splitlines()
                mine = [line for line in lines[1:] if line.strip().startswith(child_path)]
                child.epilog = "\n".join([lines[0], *mine]) if mine else parser.epilog
                child.formatter_class = argparse.RawDescriptionHelpFormatter
            _inherit_examples(child, child_path)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:  # also after --help (SystemExit): what is still buffered must reach the reader here
            sys.stdout.flush()
    except BaseException as exc:
        if not _is_broken_pipe(exc):
            raise
        return _reader_went_away()


def _is_broken_pipe(exc: BaseException) -> bool:
    """A closed stdout, raised directly or from inside a task group (an exception group)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_broken_pipe(e) for e in exc.exceptions)
    return isinstance(exc, BrokenPipeError)


def _reader_went_away() -> int:
    """What Python's documentation recommends for SIGPIPE (library/signal.html, "Note on SIGPIPE"):
    point stdout at /dev/null so the interpreter's final flush of what is still buffered cannot
    fail a second time ("Exception ignored ... BrokenPipeError", exit 120), and exit quietly.
    The code is 0, not the documentation's 1: in this CLI 1 means "found a problem", and a reader
    that stopped early (`| head -1`) got what it asked for."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file (a test's capture): nothing is left to flush
        pass
    return 0


def _main(argv: Sequence[str] | None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    for i, word in enumerate(words, 1):
        try:
            word.encode("utf-8")
        except UnicodeEncodeError:  # bytes the OS decoded with surrogateescape (a Latin-1 file name)
            print(f"empire: error: argument {i} is not valid UTF-8 text", file=sys.stderr)
            return 2
    parser = build_parser()
    args = parser.parse_args(words)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    root = logging.getLogger()
    before = list(root.handlers)
    handler = logging.StreamHandler()
    handler.setFormatter(_MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])  # no-op when the root already has handlers
    # A failure repeated ten thousand times is logged once a minute with its count, from any logger.
    logrepeat.install([h for h in root.handlers if h not in before])
    # Libraries narrate routine steps at INFO (each migration plugin, each scheduled run); keep
    # the agent's own one-line-per-decision log readable unless -vv asks for everything.
    if args.verbose < 2:
        for noisy in ("alembic", "apscheduler", "kopf.objects", "httpx", "aiosqlite"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except TemporaryError as exc:
        _print_error("empire: temporary failure: ", exc)
        return 3
    except EmpireError as exc:
        _print_error("empire: error: ", exc)
        return 2
    except KeyboardInterrupt:
        return 130


class _MaskingFormatter(logging.Formatter):
    """Every log line, traceback included, through `mask_url`: the adapters already show URLs
    masked, and this catches what they cannot see (a library's message, an exception's text)."""

    def format(self, record: logging.LogRecord) -> str:
        from empire.config.urls import mask_url

        return mask_url(super().format(record))


def _print_error(prefix: str, exc: BaseException) -> None:
    """One line per problem, each with the prefix: an error with several problems (invalid
    settings, a policy file) never leaves a bare header line or a line that does not say `empire`.
    URLs in it are masked, as in the log."""
    from empire.config.urls import mask_url

    for line in mask_url(str(exc)).splitlines() or [""]:
        print(f"{prefix}{line}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
