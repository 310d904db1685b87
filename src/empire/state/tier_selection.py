"""Move candidates selected in SQL (for `state.inventory.SqlInventory`): the tiering planner's arithmetic
over the whole inventory in one query.

Why SQL: the inventory reaches millions of rows; loading them into Python to evaluate rules would
move every row over the wire each sweep. The query below computes, per object, the tier its rules
want (a CASE from the coldest tier down), its decayed access rate, the days served in its tier, and
the move's monthly saving and cost, then keeps only the moves that pay over the horizon, best
first. It mirrors `planner.plan_object` term by term (a test checks they agree on random
inventories), and runs unchanged on SQLite and PostgreSQL; only "days between two timestamps"
differs per dialect.

Idle and age conditions compare a column with a cut-off computed here (`now - N days`), so they
need no per-row date arithmetic; only the access-rate condition decays the score per row.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, String, bindparam, text
from sqlalchemy.sql.elements import TextClause

from empire.agent.tiering.planner import DAY, GIB
from empire.agent.types import Reason
from empire.policies.storage import StoragePolicy
from empire.state.tables import UTCDateTime

__all__ = ["candidates_query", "reason_of", "summary_query"]


def _days(dialect: str, column: str) -> str:
    if dialect == "sqlite":  # :now_jd is julianday(now), computed once here rather than per row
        return f"(CAST(:now_jd AS FLOAT) - julianday({column}))"
    return f"(EXTRACT(EPOCH FROM (CAST(:now AS TIMESTAMPTZ) - {column})) / 86400.0)"


def _f(name: str) -> str:
    return f"CAST(:{name} AS FLOAT)"


def _body(policy: StoragePolicy, now: datetime, dialect: str) -> tuple[str, dict[str, Any], list[str]]:
    """The shared CTEs; returns (sql, params, datetime param names)."""
    half_life_days = policy.access_half_life.total_seconds() / DAY
    lam = math.log(2) / half_life_days
    params: dict[str, Any] = {
        "now": now, "lam": lam, "min_size": policy.min_object_size,
        "months": policy.horizon.total_seconds() / DAY / 30, "gib": float(GIB),
        "now_jd": now.timestamp() / DAY + 2440587.5,  # Julian day of the Unix epoch
    }  # fmt: skip
    dt_params = ["now"]
    for i, t in enumerate(policy.tiers):
        params.update({
            f"t{i}_name": t.name, f"t{i}_cost": t.cost_per_gb_month, f"t{i}_retr": t.retrieval_cost_per_gb,
            f"t{i}_trans": t.transition_cost_per_object, f"t{i}_min": t.min_days,
        })  # fmt: skip
    n = len(policy.tiers)

    def pick(rank: str, attr: str) -> str:
        """The attribute of the tier at index `rank` (tier prices are parameters, not a join: a join
        would tempt the planner into an index lookup per row instead of one sequential scan)."""
        return f"CASE {rank} " + " ".join(f"WHEN {i} THEN {_f(f't{i}_{attr}')}" for i in range(n)) + " END"

    src_rank = "CASE c.tier " + " ".join(f"WHEN :t{i}_name THEN {i}" for i in range(n)) + " END"
    dst_name = "CASE o.want " + " ".join(f"WHEN {i} THEN CAST(:t{i}_name AS VARCHAR(64))" for i in range(n)) + " END"
    rate = f"(COALESCE(c.access_score * exp(-{_f('lam')} * {_days(dialect, 'c.access_updated_at')}), 0.0))"
    whens = []
    for i in range(len(policy.tiers) - 1, 0, -1):
        rule = policy.tiers[i].enter_when
        assert rule is not None
        conds = []
        if rule.idle_days is not None:
            params[f"t{i}_idle_cut"] = now - timedelta(days=rule.idle_days)
            dt_params.append(f"t{i}_idle_cut")
            conds.append(f"COALESCE(c.last_access_at, c.created_at) <= :t{i}_idle_cut")
        if rule.min_age_days is not None:
            params[f"t{i}_age_cut"] = now - timedelta(days=rule.min_age_days)
            dt_params.append(f"t{i}_age_cut")
            conds.append(f"c.created_at <= :t{i}_age_cut")
        if rule.max_revenue is not None:
            params[f"t{i}_max_rev"] = rule.max_revenue
            conds.append(f"c.revenue <= {_f(f't{i}_max_rev')}")
        if rule.max_access_rate is not None:  # last: the only condition that decays per row
            params[f"t{i}_max_score"] = rule.max_access_rate / lam
            conds.append(f"{rate} <= {_f(f't{i}_max_score')}")
        whens.append(f"WHEN {' AND '.join(conds) or '1=1'} THEN {i}")
    promote = "1=1" if policy.promote_on_access else "1=0"
    sql = f"""
WITH o AS (
  SELECT c.id, c.size, c.tier, c.last_access_at, c.tier_since,
         CASE {" ".join(whens)} ELSE 0 END AS want,
         {src_rank} AS src,
         {rate} * {_f("lam")} AS rate,
         {_days(dialect, "c.tier_since")} AS tier_days
  FROM content_objects c
  WHERE c.status = 'active' AND c.size >= :min_size
),
m AS (
  SELECT o.id, o.size, o.tier AS from_tier, {dst_name} AS to_tier, o.rate, o.tier_days,
         CASE WHEN o.want > o.src THEN 'd' ELSE 'p' END AS direction,
         o.size / {_f("gib")} AS gb,
         {pick("o.src", "cost")} AS s_cost, {pick("o.src", "retr")} AS s_retr, {pick("o.src", "min")} AS s_min,
         {pick("o.want", "cost")} AS d_cost, {pick("o.want", "retr")} AS d_retr, {pick("o.want", "trans")} AS d_trans
  FROM o
  WHERE o.src IS NOT NULL
    AND (o.want > o.src OR (o.want < o.src AND {promote} AND o.last_access_at > o.tier_since))
),
e AS (
  SELECT m.id, m.size, m.from_tier, m.to_tier, m.direction,
         m.gb * (m.s_cost - m.d_cost) + m.rate * 30 * m.gb * (m.s_retr - m.d_retr) AS monthly_saving,
         m.gb * m.s_retr + m.d_trans
           + CASE WHEN m.s_min > m.tier_days THEN (m.s_min - m.tier_days) * m.gb * m.s_cost / 30 ELSE 0 END
           AS move_cost
  FROM m
)"""
    return sql, params, dt_params


def _bind(sql: str, params: dict[str, Any], dt_params: list[str]) -> TextClause:
    params = {n: v for n, v in params.items() if re.search(rf":{n}\b", sql)}  # per dialect, some go unused
    dt_params = [n for n in dt_params if n in params]
    binds = [bindparam(n, type_=UTCDateTime) for n in dt_params]
    binds += [bindparam(n, type_=String) for n in params if n.endswith("_name")]
    binds += [
        bindparam(n, type_=Float)
        for n, v in params.items()
        if isinstance(v, float) and n not in dt_params and not n.endswith("_name")
    ]
    return text(sql).bindparams(*binds, **params)


def candidates_query(policy: StoragePolicy, now: datetime, dialect: str, limit: int) -> TextClause:
    """Rows (id, size, from_tier, to_tier, direction 'd'|'p', monthly_saving, move_cost), best first."""
    sql, params, dt = _body(policy, now, dialect)
    params["limit"] = int(limit)
    sql += """
SELECT id, size, from_tier, to_tier, direction, monthly_saving, move_cost FROM e
WHERE e.monthly_saving * CAST(:months AS FLOAT) > e.move_cost
ORDER BY monthly_saving DESC, id
LIMIT :limit"""
    return _bind(sql, params, dt)


def summary_query(policy: StoragePolicy, now: datetime, dialect: str) -> TextClause:
    """Rows (from_tier, to_tier, objects, bytes, monthly_saving) over every move that pays."""
    sql, params, dt = _body(policy, now, dialect)
    sql += """
SELECT from_tier, to_tier, COUNT(*) AS objects, SUM(size) AS bytes, SUM(monthly_saving) AS monthly_saving FROM e
WHERE e.monthly_saving * CAST(:months AS FLOAT) > e.move_cost
GROUP BY from_tier, to_tier
ORDER BY from_tier, to_tier"""
    return _bind(sql, params, dt)


def reason_of(direction: str) -> Reason:
    return Reason.idle_demotion if direction == "d" else Reason.access_promotion
