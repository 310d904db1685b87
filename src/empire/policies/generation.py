"""Generation: providers (external APIs), their account pools, budgets and personas.

A *provider* is one generation API; each *account* is one API key on it with its own limits. API
keys appear only as `SecretRef`s. The `simulated` provider kind lets the embedded default and the
tests run the whole generation path without any external service.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from empire.policies.common import Name, SecretRef, StrictModel, Url
from empire.policies.durations import Duration, PositiveDuration
from empire.policies.errors import Issue, duplicate_name_issues, raise_issues

__all__ = [
    "Account",
    "Budget",
    "Cadence",
    "CompliancePolicy",
    "CooldownPolicy",
    "HttpProviderSpec",
    "Persona",
    "PersonaTrend",
    "Priority",
    "Provider",
    "RetryPolicy",
    "RoutingStrategy",
    "SimulatedProviderSpec",
    "SpendFloor",
    "SpendPolicy",
]


class Budget(StrictModel):
    """A spend cap: the budget guard claims no job that would pass it."""

    daily: float | None = Field(default=None, ge=0, description="currency units per UTC day")
    monthly: float | None = Field(default=None, ge=0, description="currency units per UTC month")


class Account(StrictModel):
    """One API key on a provider, with its own limits."""

    name: Name
    api_key: SecretRef | None = Field(default=None, description="reference to the key; never the key")
    requests_per_minute: float = Field(default=60, gt=0, description="submissions per minute on this key")
    burst: int | None = Field(default=None, ge=1, description="token bucket size (default: 1 s of rate, >= 1)")
    limit_model: Literal["token_bucket", "fixed_window", "sliding_window"] = Field(
        default="token_bucket",
        description="how the provider counts requests_per_minute: a token bucket (an even rate, bursts of `burst`), "
        "a counter reset each wall-clock minute (fixed_window), or any 60 s (sliding_window)",
    )
    max_concurrent: int = Field(default=10, ge=1, description="jobs in flight at once on this key")
    cost_per_job: float | None = Field(default=None, ge=0, description="overrides the provider's")
    weight: float = Field(default=1.0, gt=0, description="share of traffic for the 'weighted' strategy")
    enabled: bool = Field(default=True, description="false: the account gets no jobs")

    @model_validator(mode="after")
    def _burst_is_a_bucket_setting(self) -> Account:
        if self.burst is not None and self.limit_model != "token_bucket":
            raise ValueError(f"burst applies to limit_model token_bucket only (a {self.limit_model} allows "
                             "requests_per_minute at once)")  # fmt: skip
        return self


class RoutingStrategy(StrEnum):
    least_busy = "least-busy"
    lowest_latency = "lowest-latency"
    cheapest = "cheapest"
    weighted = "weighted"


class CooldownPolicy(StrictModel):
    """Per-account circuit breaker. On errors it opens briefly (`initial`) and for twice as long
    each time a probe fails, up to `duration`: a few errors in a row under random noise cost a
    key a second, not a minute, while a provider that stays down is asked less and less often."""

    after_rate_limit: Duration = Field(default=timedelta(seconds=30), description="when no Retry-After")
    failures: int = Field(default=5, ge=1, description="consecutive failures of any kind that open it")
    server_errors: int = Field(default=3, ge=1, description="consecutive 5xx that open it")
    failure_rate: float = Field(
        default=0.5, gt=0.0, le=1.0,
        description="and only when at least this share of the account's last calls (up to 20) failed: "
        "a run of errors among many successes is noise, not a broken account",
    )  # fmt: skip
    initial: Duration = Field(
        default=timedelta(seconds=1), description="first opening on errors; doubled while probes fail, up to duration"
    )
    duration: Duration = Field(default=timedelta(seconds=60), description="the longest it stays open on errors")
    after_auth_failure: Duration = Field(
        default=timedelta(minutes=15), description="a rejected key (401/403) rests this long before one probe"
    )

    def backoff(self, failed_probes: int) -> float:
        """Seconds open after this many failed probes in a row (0: the first opening)."""
        return min(self.duration.total_seconds(), self.initial.total_seconds() * 2.0 ** min(failed_probes, 30))


class RetryPolicy(StrictModel):
    """Retries of a failed job: exponential backoff with jitter, then the dead-letter state."""

    max_attempts: int = Field(default=5, ge=1, description="attempts before a job is dead-lettered")
    backoff_base: Duration = Field(default=timedelta(seconds=1), description="first retry delay, doubled each time")
    backoff_max: Duration = Field(default=timedelta(minutes=5), description="longest retry delay")


class HttpProviderSpec(StrictModel):
    """A generic JSON job API: submit, then poll (or receive a callback) until done."""

    submit_url: Url = Field(description="POST endpoint that creates a job")
    body_template: dict[str, object] = Field(
        default_factory=lambda: {"prompt": "{prompt}"},
        description="JSON body; '{prompt}', '{persona}', '{genre}', '{idempotency_key}' are filled in",
    )
    job_id_path: str = Field(default="id", description="dotted path of the job id in the submit response")
    poll_url: Url | None = Field(default=None, description="GET endpoint with '{job_id}'; none = callback")
    status_path: str = Field(default="status", description="dotted path of the job state in the poll response")
    done_values: tuple[str, ...] = Field(
        default=("succeeded", "completed", "done"), description="job states meaning done"
    )
    failed_values: tuple[str, ...] = Field(default=("failed", "error"), description="job states meaning failed")
    running_values: tuple[str, ...] = Field(
        default=("queued", "pending", "submitted", "accepted", "created", "starting", "running", "processing",
                 "in_progress", "waiting"),
        description="job states meaning not finished yet; any other state (not done, failed or empty) "
        "dead-letters the job at once, naming it, instead of waiting for the job timeout",
    )  # fmt: skip
    result_url_path: str = Field(default="result.url", description="dotted path of the result's URL")
    auth_header: str = Field(default="Authorization", description="header carrying the API key")
    auth_scheme: str = Field(default="Bearer", description="prefix before the key; empty for none")
    idempotency_header: str = Field(default="Idempotency-Key", description="header carrying the job's idempotency key")
    timeout: Duration = Field(default=timedelta(seconds=30), description="per HTTP request")
    poll_interval: Duration = Field(default=timedelta(seconds=5), description="time between polls of one job")
    result_meta_path: str = Field(
        default="result", description="dotted path of the object holding the result's metadata (title, score)"
    )
    job_timeout: Duration = Field(default=timedelta(minutes=30), description="give up polling one job after this")
    callback_secret: SecretRef | None = Field(
        default=None,
        description="callback mode (no poll_url): the token the provider sends with each callback to "
        "POST /v1/providers/<name>/callback; without it the endpoint refuses every callback",
    )
    callback_header: str = Field(default="Authorization", description="header carrying the callback token")
    callback_scheme: str = Field(default="Bearer", description="prefix before the callback token; empty for none")
    idempotency: Literal["honoured", "ignored"] = Field(
        default="honoured",
        description="'honoured': a resubmitted idempotency key returns the job it created (resubmitting after a "
        "crash is safe); 'ignored': it creates another job, so a submission that may have reached the provider "
        "is looked up (lookup_url) or marked unknown_outcome for a person to resolve, never sent again blindly",
    )
    lookup_url: Url | None = Field(
        default=None,
        description="idempotency 'ignored': GET endpoint finding a job by our reference ('{idempotency_key}', "
        "sent in the body as the provider's client reference); 404 or no id means it never arrived",
    )
    lookup_job_id_path: str = Field(
        default="id", description="dotted path of the found job's id in the lookup response (e.g. 'data.0.id')"
    )


class SimulatedProviderSpec(StrictModel):
    """A seeded, deterministic stand-in for a real API (embedded default and tests)."""

    seed: int = Field(default=0, description="random seed: same seed, same answers")
    latency_mean: Duration = Field(default=timedelta(seconds=20), description="mean time to finish a job")
    latency_sd: Duration = Field(default=timedelta(seconds=5), description="standard deviation of that time")
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1, description="share of calls answered 429")
    server_error_rate: float = Field(default=0.0, ge=0, le=1, description="share of calls answered 5xx")
    timeout_rate: float = Field(default=0.0, ge=0, le=1, description="share of calls that time out")
    dead_accounts: tuple[Name, ...] = Field(default=(), description="accounts that always answer 401")


class AnalyticsSpec(StrictModel):
    """A platform's analytics, pulled periodically into `performance_metrics` (one row per track,
    platform and day; a revised day replaces the earlier figure). Kind http: GET `url` for each
    publication, with the account's key, and map the answer by the dotted paths below. Kind
    simulated: seeded figures, no network."""

    url: Url | None = Field(
        default=None,
        description="kind http: GET endpoint; '{external_id}' (the platform's id of the publication), "
        "'{object_id}' and '{idempotency_key}' are filled in",
    )
    items_path: str = Field(default="days", description="dotted path of the list of daily figures ('' = the body)")
    date_path: str = Field(default="date", description="in an item: the UTC day (ISO 8601)")
    views_path: str = Field(default="views", description="in an item: views")
    engagement_path: str = Field(default="engagement", description="in an item: likes, comments, shares")
    revenue_path: str = Field(default="revenue", description="in an item: revenue earned that day")
    every: PositiveDuration = Field(default=timedelta(hours=6), description="how often the platform is pulled")
    window: PositiveDuration = Field(
        default=timedelta(days=90), description="publications finished within this long are pulled"
    )


class Provider(StrictModel):
    """One generation API and its pool of accounts."""

    name: Name
    kind: Literal["simulated", "http"] = Field(default="simulated", description="simulated (no network) or http")
    http: HttpProviderSpec | None = Field(default=None, description="required when kind is http")
    simulated: SimulatedProviderSpec = Field(default_factory=SimulatedProviderSpec, description="with kind simulated")
    cost_per_job: float = Field(default=0.0, ge=0, description="currency units per job (an account may override)")
    budget: Budget = Field(default_factory=Budget, description="spend cap of this provider")
    routing: RoutingStrategy = Field(
        default=RoutingStrategy.least_busy,
        description="how a job picks an account: least-busy, lowest-latency, cheapest or weighted",
    )
    fallback: tuple[Name, ...] = Field(
        default=(), max_length=10, description="providers tried when this one cannot serve"
    )
    cooldown: CooldownPolicy = Field(default_factory=CooldownPolicy)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    accounts: tuple[Account, ...] = Field(
        min_length=1, max_length=100, description="API keys, each with its own limits"
    )
    analytics: AnalyticsSpec | None = Field(
        default=None, description="a platform: pull its analytics per publication (views, engagement, revenue)"
    )

    @model_validator(mode="after")
    def _checks(self) -> Provider:
        issues: list[Issue] = []
        if self.kind == "http" and self.http is None:
            issues.append(Issue("http", "required when kind is 'http' (submit_url, ...)"))
        if self.kind == "http" and self.analytics is not None and self.analytics.url is None:
            issues.append(Issue("analytics.url", "required when kind is 'http'"))
        issues.extend(duplicate_name_issues("accounts", [a.name for a in self.accounts]))
        issues.extend(
            Issue(f"fallback[{j}]", "a provider cannot be its own fallback")
            for j, fb in enumerate(self.fallback)
            if fb == self.name
        )
        if issues:
            raise_issues(issues)
        return self


class Priority(StrEnum):
    high = "high"
    normal = "normal"
    low = "low"


class Cadence(StrictModel):
    """How many tracks a persona releases per period."""

    tracks: int = Field(default=1, ge=1, description="tracks per period")
    every: PositiveDuration = Field(default=timedelta(days=1), description="the period")


class PersonaTrend(StrictModel):
    """A metric that boosts a persona's cadence when it grows: factor = query / baseline, never
    below 1, capped by `trend_boost_max`. Both are PromQL instant queries returning one series."""

    query: str = Field(min_length=1, description="current level, e.g. sum(rate(streams_total{persona='x'}[7d]))")
    baseline: str = Field(min_length=1, description="reference level, e.g. the same query with 'offset 7d'")
    every: PositiveDuration = Field(default=timedelta(minutes=15), description="how often the trend is re-read")


class Persona(StrictModel):
    """An AI artist with a release cadence."""

    name: Name
    genres: tuple[str, ...] = Field(min_length=1, description="genres its tracks are generated in, in turn")
    cadence: Cadence = Field(default_factory=Cadence)
    providers: tuple[Name, ...] = Field(min_length=1, max_length=10, description="preference order")
    priority: Priority = Field(default=Priority.normal, description="high, normal or low: queue order and budget holds")
    paused: bool = Field(default=False, description="plan no new tracks")
    prompt_template: str = Field(
        default="{genre} track by {persona}", description="'{genre}' and '{persona}' are filled in"
    )
    trend: PersonaTrend | None = Field(default=None, description="metric-driven cadence boost (needs Prometheus)")
    trend_boost_max: float = Field(default=2.0, ge=1, description="cap on the metric-driven cadence boost")
    platforms: tuple[Name, ...] = Field(
        default=(), max_length=10, description="providers its compliant tracks are published to (one publish job each)"
    )


class CompliancePolicy(StrictModel):
    """Gate on generated results; a failing result is quarantined, not published."""

    min_score: float = Field(default=0.95, ge=0, le=1, description="lowest compliance score published")
    required_metadata: tuple[str, ...] = Field(
        default=("title", "persona", "genre"), description="metadata keys every result must carry"
    )
    banned_terms: tuple[str, ...] = Field(default=(), description="terms no title or metadata may contain")
    near_duplicate_similarity: float = Field(
        default=0.9, gt=0, le=1, description="a result this similar to a published one is a near duplicate"
    )


class SpendFloor(StrictModel):
    """Tracks every persona gets whatever its returns, so that none starves of data."""

    tracks: int = Field(default=1, ge=0, description="tracks per period (0: no floor)")
    skip_hopeless: bool = Field(
        default=True,
        description="no floor track for a persona whose optimistic return (expected + 2 sd) is below that of the "
        "last track the day's money buys: its evidence fades (memory_half_life), its uncertainty grows and "
        "the floor resumes",
    )
    every: PositiveDuration = Field(default=timedelta(days=7), description="the period")


class SpendPolicy(StrictModel):
    """How the planner spends the generation budget across personas.

    `cadence` (the default): every persona its release cadence, boosted by its trend. `returns`:
    each UTC day, what the cadences would cost is spent where the measured revenue per dollar is
    highest (Thompson sampling per persona and genre on decayed revenue, see
    `empire.agent.pools.allocating`), after a floor per persona; budgets as with `cadence`."""

    strategy: Literal["cadence", "returns"] = Field(
        default="cadence",
        description="cadence: fixed release cadence; returns: spend where revenue per dollar is highest",
    )
    floor: SpendFloor = Field(default_factory=SpendFloor)
    draw: Literal["pending", "thompson"] = Field(
        default="pending",
        description="Thompson draws past the floor from the posterior as it will be when the track's revenue "
        "is in (pending: counting the revenue still to come of tracks already out and the floor's next "
        "tracks), or as it is now (thompson: explores more)",
    )
    max_factor: float = Field(default=3.0, ge=1, le=100, description="a persona gets at most cadence x this a day")
    memory_half_life: PositiveDuration = Field(
        default=timedelta(days=28), description="a track's revenue counts half after this long (audiences drift)"
    )
    payout_half_life: PositiveDuration = Field(
        default=timedelta(days=10), description="time for platforms to report half of a track's revenue"
    )
    prior_tracks: float = Field(
        default=1.0, gt=0, description="a persona without data counts as this many average tracks"
    )
    genre_prior_tracks: float = Field(
        default=3.0, gt=0, description="a genre without data counts as this many of its persona's tracks"
    )
    cv: float = Field(default=1.0, gt=0, le=10, description="revenue dispersion per track (standard deviation / mean)")
    lookback: PositiveDuration = Field(
        default=timedelta(days=180), description="tracks older than this are not read (their weight is small)"
    )
    pause_losing: bool = Field(
        default=False,
        description="returns: put a persona that keeps losing money on hold (source 'spending', with the "
        "evidence; `empire pools release persona NAME` lifts it); false: only report it",
    )
