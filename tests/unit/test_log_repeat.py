"""Repeated log lines: one line plus a count per interval, per logger + level + template."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from empire import logrepeat


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def setup() -> Iterator[tuple[Clock, io.StringIO]]:
    clock, out = Clock(), io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logrepeat.install([handler], clock=clock)
    loggers = [logging.getLogger(n) for n in ("asyncio", "uvicorn.error", "empire.test")]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate, lg.level = False, logging.INFO
    yield clock, out
    for lg in loggers:
        lg.removeHandler(handler)
        lg.propagate, lg.level = True, logging.NOTSET


def lines(out: io.StringIO) -> list[str]:
    return [line for line in out.getvalue().splitlines() if not line.startswith(("Traceback", "  ", "OSError"))]


def test_a_flood_is_one_line_plus_a_count_per_interval(setup) -> None:
    clock, out = setup
    log = logging.getLogger("asyncio")
    for second in range(150):  # 150 s of 100 identical errors a second, each with its traceback
        clock.t = 1000.0 + second
        for _ in range(100):
            try:
                raise OSError(24, "Too many open files")
            except OSError:
                log.error("socket.accept() out of system resource", exc_info=True)
    assert lines(out) == [
        "ERROR asyncio: socket.accept() out of system resource",
        "ERROR asyncio: socket.accept() out of system resource (repeated 6,000 times in the last 60s)",
        "ERROR asyncio: socket.accept() out of system resource (repeated 6,000 times in the last 60s)",
    ]
    assert out.getvalue().count("Traceback") == 1  # the first line's, not 15,000
    clock.t += 60  # the flood stopped: its count is written with the next line anyone logs
    logging.getLogger("empire.test").info("tick")
    assert lines(out)[-2:] == [
        "ERROR asyncio: socket.accept() out of system resource (repeated 2,999 times in the last 29s)",
        "INFO empire.test: tick",
    ]


def test_counts_still_pending_are_written_at_exit(setup) -> None:
    clock, out = setup
    log = logging.getLogger("uvicorn.error")
    for _ in range(10):
        log.warning("Invalid HTTP request received.")
    clock.t += 2
    handler = next(h for h in log.handlers if any(isinstance(f, logrepeat.RepeatFilter) for f in h.filters))
    next(f for f in handler.filters if isinstance(f, logrepeat.RepeatFilter)).write_counts()  # what atexit calls
    assert lines(out) == [
        "WARNING uvicorn.error: Invalid HTTP request received.",
        "WARNING uvicorn.error: Invalid HTTP request received. (repeated 9 times in the last 1s)",
    ]


def test_keyed_by_logger_level_and_template_not_by_arguments(setup) -> None:
    clock, out = setup
    uv, own = logging.getLogger("uvicorn.error"), logging.getLogger("empire.test")
    for port in range(40000, 40050):
        uv.warning("Invalid HTTP request received from %s.", f"127.0.0.1:{port}")
        uv.error("Invalid HTTP request received from %s.", f"127.0.0.1:{port}")
        own.warning(f"connection from 127.0.0.1:{port} closed")  # pre-formatted: digits count as one
    assert lines(out) == [
        "WARNING uvicorn.error: Invalid HTTP request received from 127.0.0.1:40000.",
        "ERROR uvicorn.error: Invalid HTTP request received from 127.0.0.1:40000.",
        "WARNING empire.test: connection from 127.0.0.1:40000 closed",
    ]
    clock.t += 61
    uv.warning("Invalid HTTP request received from %s.", "127.0.0.1:1")
    assert lines(out)[-3:] == [
        "ERROR uvicorn.error: Invalid HTTP request received from 127.0.0.1:40049. (repeated 49 times in the last 1s)",
        "WARNING empire.test: connection from 127.0.0.1:40049 closed (repeated 49 times in the last 1s)",
        "WARNING uvicorn.error: Invalid HTTP request received from 127.0.0.1:1. (repeated 50 times in the last 61s)",
    ]


def test_info_lines_are_the_narrative_and_pass(setup) -> None:
    """One INFO line per decision, each target the same template: none is dropped."""
    _, out = setup
    log = logging.getLogger("empire.test")
    for i in range(500):
        log.info("decision %s: current %d desired %d (no_change)", f"target-{i}", 3, 3)
    assert len(lines(out)) == 500


def test_installed_once_where_the_cli_configures_logging() -> None:
    """`empire` puts the filter on the root handler it creates, which every logger reaches (the
    HTTP server's too: tests/integration/test_http_limits.py)."""
    from empire.cli import _main

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        _main(["version"])
        assert [type(f) for h in root.handlers for f in h.filters] == [logrepeat.RepeatFilter]
    finally:
        root.handlers = saved
