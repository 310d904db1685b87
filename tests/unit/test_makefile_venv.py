"""The Makefile's venv step on a machine without python3-venv (a fresh Debian/Ubuntu): one line
saying what to install, and no half-made venv left for the next `make demo` to trip over.

A stand-in `python3` behaves as Debian's does without python3-venv: it creates the venv's
bin/python, prints the ensurepip error and exits 1.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HINT = "install python3-venv (Debian/Ubuntu: apt-get install python3-venv)"

WITHOUT_VENV = """#!/bin/sh
mkdir -p "$3/bin" && ln -sf /usr/bin/python3 "$3/bin/python"
echo "The virtual environment was not created successfully because ensurepip is not available." >&2
exit 1
"""
WITH_VENV = """#!/bin/sh
mkdir -p "$3/bin" && ln -sf /usr/bin/python3 "$3/bin/python"
printf '#!/bin/sh\\nexit 0\\n' > "$3/bin/pip" && chmod +x "$3/bin/pip"
"""


def make_venv(tmp_path: Path, python: str) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "python3"
    fake.write_text(python)
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    return subprocess.run(
        ["make", "-s", "-C", str(ROOT), f"{venv}/bin/python", f"PYTHON={fake}", f"VENV={venv}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_missing_python3_venv_prints_the_package_to_install(tmp_path: Path) -> None:
    res = make_venv(tmp_path, WITHOUT_VENV)
    assert res.returncode != 0
    assert HINT in res.stderr
    assert not (tmp_path / "venv" / "bin" / "python").exists()  # the next `make` tries again


def test_no_hint_when_venv_works(tmp_path: Path) -> None:
    res = make_venv(tmp_path, WITH_VENV)
    assert res.returncode == 0, res.stderr
    assert HINT not in res.stderr + res.stdout
