"""The Dockerfile and its lock file (no Docker here: these check the text, `docker build` is not run).

Why each check: a wheel directory left in a layer doubles the image; a gid that differs from the
Deployment's makes files on the volume unreadable; a lock that misses a dependency of pyproject.toml
means the image runs code nobody pinned; a grace period shorter than an action's timeout lets the
kubelet kill the agent between the API call and its journal entry.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from empire.agent.journal import ActionRunner

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOCK = ROOT / "deploy" / "image" / "requirements.lock"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [(m.group(1).upper(), m.group(2)) for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.M)]


def locked() -> dict[str, str]:
    return {
        canonicalize_name(m.group(1)): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK.read_text(), re.M)
    }


def test_runtime_stage_copies_only_the_installed_environment() -> None:
    steps = instructions()
    froms = [i for i, (k, _) in enumerate(steps) if k == "FROM"]
    assert len(froms) == 2 and all(steps[i][1].startswith("${BASE}") for i in froms)
    runtime = steps[froms[1] :]
    copies = [v for k, v in runtime if k == "COPY"]
    assert copies == ["--from=build /opt/empire /opt/empire"]
    assert "wheel" not in DOCKERFILE.lower().replace("no wheels", "")
    build = steps[froms[0] : froms[1]]
    installs = [v for k, v in build if k == "RUN" and "pip install" in v]
    assert "--require-hashes -r /tmp/requirements.lock" in installs[0] and "--no-deps /src" in installs[1]


def test_base_image_is_a_build_argument_for_a_digest() -> None:
    assert [v for k, v in instructions() if k == "ARG"] == ["BASE=python:3.11-slim"]
    assert "@sha256:" in DOCKERFILE  # the comment says how to pin it


def test_user_and_group_match_the_deployment() -> None:
    pod = yaml.safe_load((ROOT / "deploy" / "base" / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    sc = pod["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["fsGroup"]) == (10001, 10001, 10001)
    assert "groupadd --system --gid 10001 empire" in DOCKERFILE and "--uid 10001 --gid 10001" in DOCKERFILE
    assert ("USER", "10001:10001") in instructions()


def test_healthcheck_probes_the_agents_healthz() -> None:
    [check] = [v for k, v in instructions() if k == "HEALTHCHECK"]
    assert "/healthz" in check and "EMPIRE_HEALTHCHECK_URL" in check


def test_lock_pins_every_dependency_of_the_image_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    for extra in ("postgres", "redis", "operator"):
        wanted += [Requirement(r) for r in project["optional-dependencies"][extra]]
    pins = locked()
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in the lock: make lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} is not {req}: make lock"
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n\n", 1)[1])
    assert all("--hash=sha256:" in b for b in blocks if "==" in b)
    assert "file://" not in LOCK.read_text() and "--find-links" not in LOCK.read_text()


def test_grace_period_outlasts_the_longest_action() -> None:
    pod = yaml.safe_load((ROOT / "deploy" / "base" / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    timeout = inspect.signature(ActionRunner).parameters["timeout"].default
    assert pod["terminationGracePeriodSeconds"] > timeout + 10
