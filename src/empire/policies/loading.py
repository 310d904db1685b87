"""Load policy files, and reload them while the agent runs.

`load_policy` reads YAML strictly (duplicate keys are errors: PyYAML would silently keep the last
one) and validates it with `parse_policy`. `PolicyWatcher` polls the file: polling by content hash,
not inotify, because a Kubernetes ConfigMap volume updates by swapping a symlink, which inotify
watchers on the file miss. A changed file that fails validation is rejected with its errors logged,
and the policy in force stays in force.

Every way a policy can fail to load is a `PolicyError` (or, for an unreadable file, a
`ConfigError`): the file is read through `empire.boundedio` (at most `MAX_POLICY_BYTES`), YAML
nesting is limited to `MAX_DEPTH` levels while composing (PyYAML's composer recurses: 5,000 `[`
was a `RecursionError`), aliases may not expand past `MAX_NODES` nodes (a "billion laughs"
document is a few hundred bytes), and a value Python cannot build (an integer of 5,000 digits) is
a YAML error at its line. So the daemon counts, shows and alerts on every rejected reload, and
`empire policy validate` prints one line per problem. `PolicyWatcher.check_async` reads and
parses in a worker thread: a slow or huge file never stalls the loop or the HTTP endpoints.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import yaml

from empire.boundedio import MAX_POLICY_BYTES, read_bounded_text
from empire.errors import ConfigError
from empire.policies.errors import Issue, PolicyError
from empire.policies.schema import Policy, parse_policy, policy_version

__all__ = ["LoadedPolicy", "PolicyWatcher", "default_policy_path", "load_policy", "load_policy_text"]

logger = logging.getLogger(__name__)

MAX_DEPTH = 64
"""Nesting levels of mappings and lists (the policy schema itself needs about 12)."""
MAX_NODES = 200_000
"""YAML nodes after expanding aliases (the shipped example has about 700)."""


def default_policy_path() -> Path:
    """The commented example policy shipped with the package."""
    return Path(__file__).parent / "defaults" / "policy.yaml"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys and nesting deeper than `MAX_DEPTH`."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent):
            if self._depth >= MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            self._depth += 1
            try:
                return super().compose_node(parent, index)  # type: ignore[misc]
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)  # type: ignore[misc]

    def construct_object(self, node: yaml.Node, deep: bool = False) -> object:
        """A scalar Python cannot build (an integer of 5,000 digits, month 13) is an error at its line."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read the value {_preview(node)}: {_short(exc)}", node.start_mark
            ) from None


def _preview(node: yaml.Node) -> str:
    value = str(node.value) if isinstance(node, yaml.ScalarNode) else node.tag
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _short(exc: Exception) -> str:
    text = str(exc)
    if "integer string conversion" in text:
        return "too many digits"
    return text.split(";")[0]


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in the document once every alias is expanded, counted without expanding them."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in node.value)
        else:
            total = 1
        sizes[id(node)] = total
        return total

    return size(root)


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


def _load_yaml(text: str) -> object:
    """The YAML document in `text`, within `MAX_DEPTH` and `MAX_NODES` (else a `yaml.YAMLError`)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if (n := _expanded_size(node)) > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand to {n:,} nodes, more than {MAX_NODES:,}", node.start_mark
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_policy_text(text: str, source: str = "<policy>") -> LoadedPolicy:
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError([Issue("(yaml)", f"malformed YAML: {problem}", line)], source) from None
    policy = parse_policy(data, source=source, text=text)
    return LoadedPolicy(policy=policy, version=policy_version(policy), source=source, text=text)


def read_policy_text(path: str | Path) -> str:
    """The text of a policy file, at most `MAX_POLICY_BYTES` (else a one-line `ConfigError`)."""
    return read_bounded_text(path, MAX_POLICY_BYTES, "policy file")


def load_policy(path: str | Path) -> LoadedPolicy:
    return load_policy_text(read_policy_text(path), source=str(path))


@dataclass(frozen=True)
class _Poll:
    """What one poll found: nothing new (`digest` None), a new valid policy, or why it was rejected."""

    digest: str | None = None
    loaded: LoadedPolicy | None = None
    error: str | None = None


class PolicyWatcher:
    """Reload `path` when its content changes; hand each valid new policy to `on_change`.

    `check()` does one poll and is what tests call; `check_async()` is the same poll with the
    reading and parsing in a worker thread (the daemon's); `run()` polls every `interval` seconds.
    `current` is swapped in one assignment, so readers see the old or the new policy, never a mix.
    Whatever goes wrong in a poll is a rejection (`last_error`), never an exception out of it.
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
        return self._settle(self._poll())

    async def check_async(self) -> bool:
        """`check()` with the file read and parsed in a worker thread; `on_change` runs here."""
        return self._settle(await anyio.to_thread.run_sync(self._poll))

    def _poll(self) -> _Poll:
        """Read and parse the file if it changed; no side effects (it may run in a worker thread)."""
        try:
            text = read_policy_text(self.path)
        except ConfigError as exc:
            return _Poll(error=str(exc))
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            return _Poll()
        try:
            return _Poll(digest, loaded=load_policy_text(text, source=str(self.path)))
        except ConfigError as exc:
            return _Poll(digest, error=str(exc))
        except Exception as exc:  # a defect of ours: still a rejection, the policy in force stays
            logger.debug("policy %s could not be validated", self.path, exc_info=True)
            return _Poll(digest, error=f"{self.path}: could not be validated: {type(exc).__name__}: {exc}")

    def _settle(self, poll: _Poll) -> bool:
        if poll.error is not None:
            if poll.digest is not None:
                self._digest = poll.digest
            self._reject(poll.error)
            return False
        if poll.digest is None or poll.loaded is None:
            return False
        self._digest = poll.digest
        self.last_error = None
        loaded = poll.loaded
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
            await self.check_async()
