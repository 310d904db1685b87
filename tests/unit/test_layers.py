"""The core stays pure at import time: importing a core module loads no I/O library.

The core modules are the `source_modules` of the `core-pure` contract in `.importlinter` (one list,
read here), each imported in a fresh interpreter, since a test process has long since loaded
SQLAlchemy and anyio. import-linter checks the static graph (`make lint`); this checks what Python
actually loads, including what a package `__init__` drags in, which is how purity leaked before
(`empire.agent.deciding` loaded anyio and yaml through `policies/__init__`).
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_LIBRARIES = ("sqlalchemy", "httpx", "anyio", "redis", "kopf", "yaml", "aiohttp", "starlette", "asyncpg")


def core_modules() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    names = config["importlinter:contract:core-pure"]["source_modules"].split()
    out: list[str] = []
    for name in names:
        out.append(name)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:  # a package: every module in it
            out += [m.name for m in pkgutil.walk_packages(spec.submodule_search_locations, name + ".")]
    return out


def test_the_contract_names_the_core() -> None:
    modules = core_modules()
    for name in ("empire.agent.deciding", "empire.agent.stabilizing", "empire.agent.types", "empire.agent.ports",
                 "empire.policies.schema", "empire.models.forecast"):  # fmt: skip
        assert name in modules


@pytest.mark.parametrize("module", core_modules())
def test_core_module_loads_no_io_library(module: str) -> None:
    code = (
        f"import json, sys; import {module}; print(json.dumps(sorted(m for m in {IO_LIBRARIES!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], f"importing {module} loaded an I/O library"
