"""A benchmark script's name must not shadow a standard-library module.

`python benchmarks/x.py` puts `benchmarks/` first on sys.path, so a `benchmarks/http.py` made
every other benchmark that imports httpx (which imports `http.client`) fail at start-up."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_no_benchmark_shadows_the_standard_library() -> None:
    names = {p.stem for p in BENCHMARKS.glob("*.py")}
    assert names, BENCHMARKS
    assert not names & set(sys.stdlib_module_names), sorted(names & set(sys.stdlib_module_names))
