"""Load policy files, and reload them while the agent runs.

`load_policy` reads YAML strictly (duplicate keys are errors: PyYAML would silently keep the last
one) and validates it with `parse_policy`. `PolicyWatcher` polls the file: polling by content hash,
not inotify, because a Kubernetes ConfigMap volume updates by swapping a symlink, which inotify
watchers on the file miss. A changed file that fails validation is rejected with its errors logged,
and the policy in force stays in force.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import yaml

from empire.errors import ConfigError
from empire.policies.errors import Issue, PolicyError
from empire.policies.schema import Policy, parse_policy, policy_version

__all__ = ["LoadedPolicy", "PolicyWatcher", "default_policy_path", "load_policy", "load_policy_text"]

logger = logging.getLogger(__name__)


def default_policy_path() -> Path:
    """The commented example policy shipped with the package."""
    return Path(__file__).parent / "defaults" / "policy.yaml"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    version: str
    source: str
    text: str


def load_policy_text(text: str, source: str = "<policy>") -> LoadedPolicy:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError([Issue("(yaml)", f"malformed YAML: {problem}", line)], source) from None
    policy = parse_policy(data, source=source, text=text)
    return LoadedPolicy(policy=policy, version=policy_version(policy), source=source, text=text)


def load_policy(path: str | Path) -> LoadedPolicy:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such policy file") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, expected a YAML policy file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read policy file: {exc}") from None
    return load_policy_text(text, source=str(p))


class PolicyWatcher:
    """Reload `path` when its content changes; hand each valid new policy to `on_change`.

    `check()` does one poll and is what tests call; `run()` polls every `interval` seconds.
    `current` is swapped in one assignment, so readers see the old or the new policy, never a mix.
    """

    def __init__(
        self,
        path: str | Path,
        on_change: Callable[[LoadedPolicy], None] | None = None,
        interval: float = 2.0,
    ) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self.interval = interval
        self.current = load_policy(self.path)
        self._digest = hashlib.sha256(self.current.text.encode()).hexdigest()
        self.last_error: str | None = None

    def check(self) -> bool:
        """Poll once. True when a new valid policy was swapped in."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            self._reject(f"{self.path}: cannot read policy file: {exc}")
            return False
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            loaded = load_policy_text(text, source=str(self.path))
        except ConfigError as exc:
            self._reject(str(exc))
            return False
        self.last_error = None
        if loaded.version == self.current.version:
            return False  # formatting or comments changed, the policy did not
        logger.info("policy reloaded from %s: version %s -> %s", self.path, self.current.version, loaded.version)
        self.current = loaded
        if self.on_change is not None:
            self.on_change(loaded)
        return True

    def _reject(self, message: str) -> None:
        if message != self.last_error:
            logger.error("policy reload rejected, keeping version %s:\n%s", self.current.version, message)
        self.last_error = message

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            self.check()
