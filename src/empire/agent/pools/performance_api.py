"""Performance figures over HTTP: what platforms report per track, platform and day.

    POST /v1/performance   {"figures": [{"id": "trk-...", "platform": "youtube", "date": "2026-06-09",
                                         "views": 120, "engagement": 9, "revenue": 1.5}, ...]}

For a platform (or its exporter) that pushes rather than being pulled. A figure is the day's, not
a running total: the row for (id, platform, date) is replaced by a later figure for it (a platform
revising yesterday), never added to. The batch is applied all or nothing (an unknown track: 404;
a bad figure: 422 naming it), audited with the token's name, and the tracks' revenue to date in
the content inventory follows (tiering and the `returns` spending read it). Scope write.
"""

from __future__ import annotations

from datetime import date as Day

from pydantic import BaseModel, Field

from empire.agent.api.auth import Scope
from empire.agent.api.spec import ApiError, Call, Endpoint, Error, Reply, Strict
from empire.agent.pools.performance import MAX_COUNT, PerformanceFigure, PerformanceStore, figure_error
from empire.agent.ports import Clock
from empire.errors import ConfigError, NotFoundError

__all__ = ["endpoints"]

MAX_BATCH = 10_000


class FigureIn(Strict):
    id: str = Field(min_length=1, max_length=128, description="the content object (track) id")
    platform: str = Field(min_length=1, max_length=128)
    date: Day = Field(description="the UTC day the figure is for")
    views: int = Field(default=0, ge=0, le=MAX_COUNT)
    engagement: int = Field(default=0, ge=0, le=MAX_COUNT, description="likes, comments, shares, saves")
    revenue: float = Field(default=0.0, allow_inf_nan=False, description="earned that day")


class PerformanceBody(Strict):
    figures: list[FigureIn] = Field(min_length=1, max_length=MAX_BATCH)


class Recorded(BaseModel):
    recorded: int = Field(description="figures written (a figure for a day already there replaces it)")


def endpoints(store: PerformanceStore, clock: Clock) -> list[Endpoint]:
    async def record(call: Call) -> Reply:
        body: PerformanceBody = call.body
        now = clock.now()
        figures = [PerformanceFigure(f.id, f.platform, f.date, f.views, f.engagement, f.revenue) for f in body.figures]
        for i, f in enumerate(figures):
            if (why := figure_error(f, now.date())) is not None:
                path, _, message = why.partition(": ")
                path = {"period": "date"}.get(path, path)  # the body's name for it
                raise ApiError(422, f"invalid body: figures.{i}.{path}: {message}",
                               [{"path": f"figures.{i}.{path}", "message": message}])  # fmt: skip
        try:
            n = await store.record(figures, actor=call.actor, at=now, source="api")
        except NotFoundError as exc:
            raise ApiError(404, f"{exc}; nothing was changed") from None
        except ConfigError as exc:
            raise ApiError(422, f"invalid body: {exc}; nothing was changed") from None
        call.audited()  # the store wrote the audit row with the change
        return Reply(200, Recorded(recorded=n))

    return [
        Endpoint("POST", "/v1/performance", "performance.record",
                 "Record views, engagement and revenue per track, platform and day (all or nothing)", record,
                 {200: ("applied", Recorded), 404: ("a track id is unknown; nothing was changed", Error)},
                 scope=Scope.write, tag="content", body=PerformanceBody),
    ]  # fmt: skip
