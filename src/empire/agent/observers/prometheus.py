"""`PrometheusObserver`: signals from the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`).

Failures are split by *whose* problem they are, because the loop's rules differ:

* the source is unreachable or refuses us (connection refused, timeout, 5xx, 429, 401/403, a body
  that is not Prometheus JSON): `observe()` raises Temporary/PermanentError and the loop counts a
  source failure (hold, then fallback);
* one query is wrong for its signal (400/422 bad query, no series, more than one series, a
  non-numeric or NaN value): that signal's `Sample` says so and the others still count (a bad
  signal can never scale down).

A query must return exactly one series: two series would make "the value" ambiguous (HPA and
KEDA silently pick one, which users discover in production). The error names the label sets and
suggests aggregating. Staleness is `now - sample timestamp`; note that an instant query stamps
its result with the evaluation time, so for raw selectors Prometheus's own lookback (5 minutes)
is what turns a dead exporter into an empty result (`missing`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx

from empire.agent.httpretry import parse_retry_after, retry, transport_error
from empire.agent.types import Sample, SampleStatus
from empire.config.urls import mask_url
from empire.errors import PermanentError, TemporaryError
from empire.policies.scaling import Target

__all__ = ["PrometheusObserver", "QueryError"]

logger = logging.getLogger(__name__)


class QueryError(PermanentError):
    """The query itself is wrong (bad PromQL, several series): a problem of one signal, not of the source."""


def _labels(metric: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


class PrometheusObserver:
    source = "prometheus"  # the `source` label of empire_metric_source_up

    def __init__(
        self,
        url: str,
        *,
        bearer_token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        verify: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        headers = {"Accept": "application/json"}
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        auth = httpx.BasicAuth(username, password or "") if username else None
        self.url = mask_url(url.rstrip("/"))  # what messages show: they reach the journal and /status
        self.retries = retries
        self._sleep = sleep
        self._client = httpx.AsyncClient(  # a user:password@ in `url` is sent as basic auth by httpx
            base_url=url.rstrip("/"), headers=headers, auth=auth, timeout=timeout, verify=verify, transport=transport
        )

    @classmethod
    def from_settings(cls, s: Any, **kw: Any) -> PrometheusObserver:
        """From `Settings.prometheus` (secrets unwrapped here and nowhere else)."""
        return cls(
            s.url,
            bearer_token=s.bearer_token.get_secret_value() if s.bearer_token else None,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            timeout=s.timeout, retries=s.retries, verify=s.verify_tls, **kw,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"PrometheusObserver({self.url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            try:
                resp = await self._client.get(path, params=params)
            except httpx.HTTPError as exc:
                raise transport_error(exc, f"prometheus {self.url}") from None
            return self._parse(resp)

        return await retry(once, self.retries + 1, what=f"prometheus {path}", sleep=self._sleep)

    def _parse(self, resp: httpx.Response) -> dict[str, Any]:
        code = resp.status_code
        if code == 429 or code >= 500:
            raise TemporaryError(
                f"prometheus {self.url} answered {code}", delay=parse_retry_after(resp.headers.get("Retry-After"))
            )
        if code in (401, 403):
            raise PermanentError(f"prometheus {self.url} refused the credentials ({code}); check EMPIRE_PROMETHEUS__*")
        try:
            body = resp.json()
        except ValueError:
            raise TemporaryError(f"prometheus {self.url} answered {code} with a non-JSON body") from None
        if not isinstance(body, dict) or "status" not in body:
            raise TemporaryError(f"prometheus {self.url} answered {code} with an unexpected body")
        if code in (400, 422) or body.get("status") == "error":
            raise QueryError(f"{body.get('errorType', 'error')}: {body.get('error', 'query rejected')}")
        if code != 200 or not isinstance(body.get("data"), dict):
            raise TemporaryError(f"prometheus {self.url} answered {code} without data")
        return body["data"]

    async def query(self, promql: str, at: datetime) -> tuple[datetime, float]:
        """Evaluate an instant query at `at`; exactly one series (or a scalar) is expected.
        Raises QueryError for zero or several series and non-numeric values."""
        data = await self._get("/api/v1/query", {"query": promql, "time": f"{at.timestamp():.3f}"})
        kind, result = data.get("resultType"), data.get("result")
        try:
            if kind == "scalar":
                ts, raw = result  # type: ignore[misc]
            elif kind == "vector":
                if not result:
                    raise LookupError("no series")
                if len(result) > 1:
                    shown = ", ".join(_labels(r.get("metric", {})) for r in result[:3])
                    more = f" and {len(result) - 3} more" if len(result) > 3 else ""
                    raise QueryError(
                        f"query returned {len(result)} series ({shown}{more}); a signal needs exactly one: "
                        f"aggregate it, e.g. sum({promql}) or max({promql})"
                    )
                ts, raw = result[0]["value"]
            else:
                raise QueryError(f"query returned a {kind}, expected an instant vector or scalar")
            return datetime.fromtimestamp(float(ts), UTC), float(raw)
        except (TypeError, ValueError, KeyError, IndexError):
            raise TemporaryError(f"prometheus {self.url} returned a malformed {kind} result") from None

    async def observe(self, target: Target, now: datetime) -> tuple[Sample, ...]:
        samples = []
        for signal in target.signals:
            try:
                at, value = await self.query(signal.query, now)
            except LookupError:
                samples.append(Sample(signal.name, None, None, None, SampleStatus.missing, "query returned no series"))
                continue
            except QueryError as exc:
                samples.append(Sample(signal.name, None, None, None, SampleStatus.invalid, str(exc)))
                continue
            staleness = max(0.0, (now - at).total_seconds())
            status, error = SampleStatus.ok, None
            if not math.isfinite(value):
                status, error = SampleStatus.invalid, f"value is {value}"
            samples.append(Sample(signal.name, value, at, staleness, status, error))
        return tuple(samples)

    async def history(self, query: str, start: datetime, end: datetime, step: float) -> list[tuple[datetime, float]]:
        """`query_range`; one series expected (NaN points are dropped)."""
        data = await self._get(
            "/api/v1/query_range",
            {"query": query, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}", "step": f"{step:g}"},
        )
        result = data.get("result") or []
        if len(result) > 1:
            raise QueryError(f"query_range returned {len(result)} series; aggregate it to one")
        points = result[0].get("values", []) if result else []
        out = []
        for ts, raw in points:
            value = float(raw)
            if math.isfinite(value):
                out.append((datetime.fromtimestamp(float(ts), UTC), value))
        return out
