"""Content over HTTP: one object as `empire content show` prints it, and the ingestion of access
events and revenue figures.

    GET  /v1/content/{id}       the object: tier, use, what the rules want and why it stays (read)
    POST /v1/content/access     {"events":  [{"id": "track-1", "at": "2026-05-01T10:00:00Z", "count": 3}, ...]}
    POST /v1/content/revenue    {"figures": [{"id": "track-1", "amount": 12.5, "mode": "set"}, ...]}

Why so strict: ingestion changes state from outside. The writes need a token with scope write
(`empire tokens create`; `EMPIRE_INGEST_TOKEN` is still accepted for these two endpoints only).
Bodies are JSON with a declared shape (unknown fields are errors), at most `http.max_body_bytes`
long, and a batch is applied all or nothing: one unknown object id rejects the batch (404) and
changes nothing. Values are checked by the inventory's `ingest_error`, as on every other
ingestion path (422 naming the field, e.g. `events.0.at: 0001-01-01T00:00:00+01:00 is before
1970-01-01`). Each accepted batch is written to the audit table, with the token's name as the
actor, in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from empire.agent.api.auth import Scope
from empire.agent.api.spec import ApiError, Call, Endpoint, Error, Reply, Strict
from empire.agent.ports import Clock
from empire.agent.tiering.describe import describe_object
from empire.agent.tiering.inventory import AccessEvent, Inventory, RevenueFigure, ingest_error
from empire.errors import ConfigError, NotFoundError
from empire.policies.storage import StoragePolicy

__all__ = ["MAX_BATCH", "endpoints"]

MAX_BATCH = 10_000
ObjectId = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class AccessItem(Strict):
    id: ObjectId
    at: AwareDatetime | None = Field(default=None, description="default: when the call arrives")
    count: int = Field(default=1, ge=1, le=1_000_000)


class AccessBody(Strict):
    events: list[AccessItem] = Field(min_length=1, max_length=MAX_BATCH)


class RevenueItem(Strict):
    id: ObjectId
    amount: float = Field(allow_inf_nan=False)
    mode: Literal["set", "add"] = "set"


class RevenueBody(Strict):
    figures: list[RevenueItem] = Field(min_length=1, max_length=MAX_BATCH)


class Updated(BaseModel):
    updated: int = Field(description="objects changed")


class PublicationOut(BaseModel):
    platform: str
    state: str = Field(description="the publish job's state (succeeded: the platform accepted it)")
    external_id: str | None = Field(description="the platform's id for the publication")
    url: str | None
    at: str | None = Field(description="when the publish job finished")
    error: str | None = None


class ContentOut(BaseModel):
    model_config = ConfigDict(extra="allow")  # planned_move or held_because, when they apply
    id: str
    tier: str
    status: str
    size: int
    checksum: str
    location: str
    persona: str | None
    title: str | None
    created_at: datetime
    tier_since: datetime
    last_access_at: datetime | None
    accesses_per_day: float
    revenue: float
    rules_want: str
    publications: list[PublicationOut] = Field(default_factory=list, description="one per platform (publish jobs)")


def endpoints(
    inventory: Inventory,
    *,
    clock: Clock,
    policy: Callable[[], StoragePolicy],
    publications: Callable[[str], Awaitable[list[dict[str, Any]]]] | None = None,
) -> list[Endpoint]:
    """The content endpoints, for `build_app(context, extra_routes=api_routes(...))`. `publications`:
    a track's publish jobs (platform, state, external id), as `empire content show` lists them."""

    def first_error(name: str, items: list[AccessEvent] | list[RevenueFigure], now: datetime) -> None:
        for i, item in enumerate(items):
            if (why := ingest_error(item, now)) is not None:
                path, _, message = why.partition(": ")
                raise ApiError(422, f"invalid body: {name}.{i}.{why}", [{"path": f"{name}.{i}.{path}",
                                                                        "message": message}])  # fmt: skip

    async def apply(call: Call, write: Callable[[], Any]) -> Reply:
        try:
            updated = await write()
        except NotFoundError as exc:
            raise ApiError(404, f"{exc}; nothing was changed") from None
        except ConfigError as exc:
            raise ApiError(422, f"invalid body: {exc}; nothing was changed") from None
        call.audited()  # the inventory wrote the audit row with the change
        return Reply(200, Updated(updated=updated))

    async def access(call: Call) -> Reply:
        body: AccessBody = call.body
        now = clock.now()
        events = [AccessEvent(e.id, e.at or now, e.count) for e in body.events]
        first_error("events", events, now)
        events = [AccessEvent(e.object_id, e.at.astimezone(UTC), e.count) for e in events]
        half_life = policy().access_half_life
        return await apply(call, lambda: inventory.record_access(events, half_life, actor=call.actor, at=now))

    async def revenue(call: Call) -> Reply:
        body: RevenueBody = call.body
        figures = [RevenueFigure(f.id, f.amount, f.mode) for f in body.figures]
        first_error("figures", figures, clock.now())
        return await apply(call, lambda: inventory.record_revenue(figures, actor=call.actor, at=clock.now()))

    async def show(call: Call) -> Reply:
        obj = await inventory.get(call.params["id"])  # NotFoundError: 404
        out = describe_object(obj, policy(), clock.now())
        out["publications"] = await publications(obj.id) if publications is not None else []
        return Reply(200, ContentOut.model_validate(out))

    batch = {200: ("applied", Updated), 404: ("an object id is unknown; nothing was changed", Error)}
    return [
        Endpoint("GET", "/v1/content/{id}", "content.show", "One content object (empire content show)", show,
                 {200: ("OK", ContentOut), 404: ("no such object", Error)}, tag="content",
                 params={"id": "the content object's id"}),
        Endpoint("POST", "/v1/content/access", "content.access", "Record access events (all or nothing)", access,
                 batch, scope=Scope.write, tag="content", body=AccessBody),
        Endpoint("POST", "/v1/content/revenue", "content.revenue", "Record revenue figures (all or nothing)",
                 revenue, batch, scope=Scope.write, tag="content", body=RevenueBody),
    ]  # fmt: skip
