"""A generic HTTP job API, described entirely by the policy (`providers[].http`).

Submit: POST `submit_url` with the JSON `body_template` filled in ('{prompt}', '{persona}',
'{genre}', '{title}', '{idempotency_key}'), the account's key in `auth_header` and our idempotency
key in `idempotency_header`; the job id is read at `job_id_path`. Poll: GET `poll_url` ('{job_id}')
until `status_path` is one of `done_values` or `failed_values`; the result URL is at
`result_url_path`, its metadata (title, score, ...) at `result_meta_path`. Without a `poll_url`
the API calls us back: the agent's HTTP endpoint hands the payload to `CallbackHub.deliver`.

Why aiohttp here and httpx elsewhere: this adapter is the pools' hot path (a submit and a poll
per job, hundreds of jobs a second); measured on the project's CI machine, httpx's connection pool
spent about 2 ms of CPU per request under 50 concurrent requests, aiohttp 0.13 ms. Status codes and
transport failures become the classified errors of `pools.errors`, with the `Retry-After` header
parsed. The key goes only into the header of requests to the provider's own
host: a result URL on another host (a CDN) is fetched without it. Nothing here logs a header.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import anyio
from pydantic import SecretStr

from empire.agent.httpretry import parse_retry_after
from empire.agent.pools.errors import (
    BadRequest,
    ConnectionFailed,
    ProviderTimeout,
    UnexpectedStatus,
    error_from_status,
)
from empire.agent.pools.providers.base import JobRequest, PollResult, Submission
from empire.errors import EmpireError
from empire.policies.generation import AnalyticsSpec, HttpProviderSpec

__all__ = ["CallbackHub", "HttpJobProvider", "dotted", "fill_template"]

logger = logging.getLogger(__name__)


def dotted(data: Any, path: str) -> Any:
    """`dotted({"a": {"b": [1, 2]}}, "a.b.1") == 2`; None when any step is missing."""
    cur = data
    for part in path.split(".") if path else []:
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdecimal() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def fill_template(template: Any, values: dict[str, str]) -> Any:
    """Replace '{name}' placeholders in every string of a JSON template. Plain replacement, not
    str.format: a prompt containing braces cannot inject or break anything."""
    if isinstance(template, str):
        out = template
        for k, v in values.items():
            out = out.replace("{" + k + "}", v)
        return out
    if isinstance(template, dict):
        return {k: fill_template(v, values) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [fill_template(v, values) for v in template]
    return template


class CallbackHub:
    """Where callback-mode providers' results arrive; the dispatcher's poll waits here.

    The endpoint (`pools.callbacks`) delivers here when this process is waiting for the job
    (`expecting`: the provider accepted it here, so a callback racing our own bookkeeping is
    not lost), and records the payload on the job's row in any case; `lookup` reads it back, so
    the replica that owns the job finds a callback another replica received, also after a restart.
    Memory is bounded: at most `max_pending` expected jobs are remembered (oldest dropped first).
    """

    def __init__(
        self,
        lookup: Callable[[str, str], Awaitable[dict[str, Any] | None]] | None = None,
        max_pending: int = 100_000,
    ) -> None:
        self.lookup = lookup
        self.max_pending = max_pending
        self._results: dict[tuple[str, str], dict[str, Any]] = {}
        self._events: dict[tuple[str, str], anyio.Event] = {}
        self._expected: OrderedDict[tuple[str, str], None] = OrderedDict()

    def expect(self, provider: str, job_id: str) -> None:
        """The provider accepted `job_id` here: its callback is for this process."""
        self._expected[(provider, job_id)] = None
        while len(self._expected) > self.max_pending:
            old, _ = self._expected.popitem(last=False)
            self._results.pop(old, None)
            self._events.pop(old, None)

    def expecting(self, provider: str, job_id: str) -> bool:
        return (provider, job_id) in self._expected

    def deliver(self, provider: str, job_id: str, payload: dict[str, Any]) -> None:
        key = (provider, job_id)
        self._results[key] = payload
        ev = self._events.pop(key, None)
        if ev is not None:
            ev.set()

    async def wait(self, provider: str, job_id: str, seconds: float) -> dict[str, Any] | None:
        key = (provider, job_id)
        if key not in self._results:
            ev = self._events.setdefault(key, anyio.Event())
            with anyio.move_on_after(seconds):
                await ev.wait()
        payload = self._results.pop(key, None)
        if payload is None and self.lookup is not None:
            payload = await self.lookup(provider, job_id)
        if payload is not None:
            self._expected.pop(key, None)
            self._events.pop(key, None)
        return payload


class HttpJobProvider:
    """The `JobProvider` port over HTTP, configured by an `HttpProviderSpec`."""

    def __init__(
        self,
        name: str,
        spec: HttpProviderSpec,
        keys: dict[str, SecretStr | None],
        session: aiohttp.ClientSession | None = None,
        callbacks: CallbackHub | None = None,
        max_connections: int = 64,
        reload_key: Callable[[str], SecretStr] | None = None,
    ) -> None:
        """`reload_key(account)` reads an account's key again from its reference (env, file,
        Secret): after a 401/403 the next request re-reads it first, so a key rotated in its
        secret is picked up by the probe after the cooldown without a restart."""
        self.name = name
        self.spec = spec
        self._keys = keys
        self._reload_key = reload_key
        self._stale: set[str] = set()
        self._session = session
        self._own_session = session is None
        self._max_connections = max_connections
        self._callbacks = callbacks or CallbackHub()
        self._host = urlsplit(spec.submit_url).netloc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created lazily: an aiohttp session belongs to a running loop
            timeout = self.spec.timeout.total_seconds()
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 10.0)),
                connector=aiohttp.TCPConnector(limit=self._max_connections),
            )
        return self._session

    def __repr__(self) -> str:  # never the keys
        return f"HttpJobProvider(name={self.name!r}, submit_url={self.spec.submit_url!r})"

    def poll_interval(self) -> float:
        return self.spec.poll_interval.total_seconds()

    def job_timeout(self) -> float:
        return self.spec.job_timeout.total_seconds()

    def _headers(self, account: str, url: str) -> dict[str, str]:
        key = self._keys.get(account)
        if key is None or urlsplit(url).netloc != self._host:
            return {}
        value = key.get_secret_value()
        scheme = self.spec.auth_scheme
        return {self.spec.auth_header: f"{scheme} {value}" if scheme else value}

    async def _fresh_key(self, account: str) -> None:
        """Re-read a rejected account's key (in a worker thread: a Secret read is a blocking call)."""
        self._stale.discard(account)
        if self._reload_key is None:
            return
        try:
            key = await anyio.to_thread.run_sync(self._reload_key, account)
        except EmpireError as exc:  # names the reference, never the value
            logger.warning("%s/%s: key not re-read, the old one is kept: %s", self.name, account, exc)
            return
        if self._keys.get(account) != key:
            logger.info("%s/%s: the key changed in its secret; using the new one", self.name, account)
        self._keys[account] = key

    async def _call(self, method: str, url: str, what: str, account: str, **kw: Any) -> tuple[int, bytes]:
        where = f"{self.name}/{account} {what}"
        if account in self._stale:  # only after a 401/403: no extra await on the hot path
            await self._fresh_key(account)
        headers = {**self._headers(account, url), **kw.pop("headers", {})}
        try:
            async with self._client().request(method, url, headers=headers, **kw) as resp:
                body = await resp.read()
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except TimeoutError:
            raise ProviderTimeout(f"{where}: timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailed(f"{where}: connection failed ({type(exc).__name__})") from None
        if status in (401, 403):
            self._stale.add(account)  # the key may have been rotated: read it again next time
        if status >= 400:
            raise error_from_status(status, where, parse_retry_after(retry_after))
        return status, body

    def _json(self, body: bytes, what: str, account: str) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            raise BadRequest(f"{self.name}/{account} {what}: response is not JSON") from None

    def _parse_status(self, data: Any, what: str) -> PollResult:
        """Done, failed or running by the spec's lists; no status at all is running (an API that
        accepts a job may say nothing more). Any other value is an `UnexpectedStatus` (a permanent
        error: the job is dead-lettered naming the value): before, it was taken for "running" and
        the job waited for the 30-minute job timeout, and a done job named differently ("complete")
        would then have been generated again."""
        status = str(dotted(data, self.spec.status_path) or "").lower()
        meta = dotted(data, self.spec.result_meta_path)
        meta = dict(meta) if isinstance(meta, dict) else {}
        if status in self.spec.done_values:
            url = dotted(data, self.spec.result_url_path)
            return PollResult("done", meta, str(url) if url else None)
        if status in self.spec.failed_values:
            return PollResult("failed", meta, error=f"{what}: provider reported {status!r}")
        if status and status not in self.spec.running_values:
            raise UnexpectedStatus(
                f"{self.name} {what}: unexpected status {status[:60]!r} at {self.spec.status_path!r} (done_values "
                f"{list(self.spec.done_values)}, failed_values {list(self.spec.failed_values)}, running_values "
                f"{list(self.spec.running_values)}): add it to the one it means")  # fmt: skip
        return PollResult("running", meta)

    async def submit(self, account: str, request: JobRequest) -> Submission:
        body = fill_template(self.spec.body_template, request.fields())
        headers = {self.spec.idempotency_header: request.key}
        _, raw = await self._call("POST", self.spec.submit_url, "submit", account, json=body, headers=headers)
        data = self._json(raw, "submit", account)
        job_id = dotted(data, self.spec.job_id_path)
        if job_id in (None, ""):
            raise BadRequest(f"{self.name}/{account} submit: no job id at {self.spec.job_id_path!r}")
        status = self._parse_status(data, "submit")
        if status.status != "running":  # answered at once (a synchronous API): no callback will come
            return Submission(str(job_id), status)
        if self.spec.poll_url is None:
            self._callbacks.expect(self.name, str(job_id))
        return Submission(str(job_id), None)

    @property
    def callbacks(self) -> CallbackHub:
        return self._callbacks

    async def poll(self, account: str, provider_job_id: str) -> PollResult:
        if self.spec.poll_url is None:
            payload = await self._callbacks.wait(self.name, provider_job_id, self.poll_interval())
            return PollResult("running") if payload is None else self._parse_status(payload, "callback")
        url = self.spec.poll_url.replace("{job_id}", provider_job_id)
        _, raw = await self._call("GET", url, "poll", account)
        return self._parse_status(self._json(raw, "poll", account), "poll")

    async def analytics(
        self, account: str, fields: dict[str, str], spec: AnalyticsSpec, days: Sequence[date] = ()
    ) -> list[dict[str, Any]]:
        """One publication's daily figures: GET `spec.url` (filled from `fields`) with the account's
        key; each item mapped by the spec's dotted paths to {date, views, engagement, revenue}.
        `days` is what the caller keeps; the platform answers with what it has."""
        assert spec.url is not None  # the policy requires it for kind http
        url = spec.url
        for name, value in fields.items():
            url = url.replace("{" + name + "}", quote(value, safe=""))
        _, raw = await self._call("GET", url, "analytics", account)
        data = self._json(raw, "analytics", account)
        items = dotted(data, spec.items_path) if spec.items_path else data
        if not isinstance(items, list):
            raise BadRequest(f"{self.name}/{account} analytics: no list at {spec.items_path!r}")
        return [
            {"date": dotted(i, spec.date_path), "views": dotted(i, spec.views_path),
             "engagement": dotted(i, spec.engagement_path), "revenue": dotted(i, spec.revenue_path)}
            for i in items if isinstance(i, dict)
        ]  # fmt: skip

    async def fetch(self, account: str, result: PollResult) -> bytes:
        if not result.result_url:
            raise BadRequest(f"{self.name}/{account} fetch: the result has no URL at {self.spec.result_url_path!r}")
        _, raw = await self._call("GET", result.result_url, "fetch", account)
        return raw

    def ignores_idempotency(self) -> bool:
        return self.spec.idempotency == "ignored"

    def can_look_up(self) -> bool:
        return self.spec.lookup_url is not None

    async def lookup(self, account: str, key: str) -> str | None:
        """GET `lookup_url` with our reference; the id at `lookup_job_id_path`, None on 404 or none there."""
        if self.spec.lookup_url is None:
            return None
        url = self.spec.lookup_url.replace("{idempotency_key}", quote(key, safe=""))
        try:
            _, raw = await self._call("GET", url, "lookup", account)
        except BadRequest as exc:
            if str(exc).endswith("HTTP 404"):
                return None  # the provider does not know the reference: it never arrived
            raise
        job_id = dotted(self._json(raw, "lookup", account), self.spec.lookup_job_id_path)
        return str(job_id) if job_id not in (None, "") else None

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
