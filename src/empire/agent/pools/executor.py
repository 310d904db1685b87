"""The `Generate` executor: turns a planned action into queued jobs, idempotently.

The journaling `ActionRunner` writes the action's intent, calls `execute`, and records the
outcome; the dispatcher then runs the jobs (their own transitions are journaled in the jobs
table). Keys come from the action itself (`gen/<persona>/<batch>/<n>`), so executing the same
action twice, or re-planning the same window after a crash, enqueues nothing twice, and
`read_back` can answer "did this intent take effect?" by looking the keys up.

Each job gets its own prompt: the persona's template, the genre (rotating through the persona's
genres) and a deterministic variation (mood, tempo, key) drawn from the job key, so that a day of
releases is not twelve copies of one prompt (the compliance gate rejects near-duplicates).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import replace

from empire.agent.pools.holds import MANUAL, HoldKind, Holds, HoldStore
from empire.agent.pools.jobs import JobPriority, NewJob
from empire.agent.pools.planner import batch_id, job_key
from empire.agent.pools.queue import JobQueue
from empire.agent.ports import Clock
from empire.agent.records import ActionRecord
from empire.agent.types import Action, DrainAccount, Generate, Outcome, OutcomeStatus, PausePersona, ReadBack, Reason
from empire.errors import PermanentError
from empire.policies.schema import Policy

__all__ = ["GenerateExecutor", "HoldExecutor", "build_jobs", "track_prompt"]

_MOODS = (
    "dusk", "neon", "rain", "sunrise", "midnight", "haze", "static", "velvet", "ember", "tide", "glass", "orbit",
    "bloom", "drift", "frost", "gold", "ashes", "aurora", "echo", "mirage", "pulse", "shadow", "summer", "tunnel",
)  # fmt: skip
_KEYS = tuple(f"{n} {m}" for n in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
              for m in ("major", "minor"))  # fmt: skip


def track_prompt(template: str, persona: str, genre: str, key: str) -> str:
    r = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))
    base = template.replace("{genre}", genre).replace("{persona}", persona)
    return f"{base}, mood: {r.choice(_MOODS)}, {60 + 2 * r.randrange(61)} bpm, {r.choice(_KEYS)}"


def build_jobs(action: Generate, policy: Policy) -> list[NewJob]:
    persona = next((p for p in policy.personas if p.name == action.persona), None)
    providers = action.providers or (persona.providers if persona else ())
    genres = action.genres or (persona.genres if persona else ())
    if not providers:
        raise PermanentError(f"generate for {action.persona}: no provider (persona not in the policy?)")
    if not genres:
        raise PermanentError(f"generate for {action.persona}: no genre")
    template = persona.prompt_template if persona else "{genre} track by {persona}"
    out = []
    for i in range(action.count):
        n = action.first + i
        key = job_key(action.persona, action.batch, n)
        genre = genres[n % len(genres)]
        request = {"prompt": track_prompt(template, action.persona, genre, key), "persona": action.persona,
                   "genre": genre, "providers": list(providers)}  # fmt: skip
        if Reason.trend_boost in action.reasons:  # trend capture: what tracks planned on a boost earn
            request["trend_boost"] = True
        out.append(NewJob(key, providers[0], request, action.persona, JobPriority[action.priority]))
    return out


class GenerateExecutor:
    """The `Executor` port for `Generate` actions."""

    def __init__(self, queue: JobQueue, policy: Callable[[], Policy], clock: Clock) -> None:
        self.queue = queue
        self.policy = policy
        self.clock = clock

    async def execute(self, action: Action) -> Outcome:
        if not isinstance(action, Generate):
            raise PermanentError(f"the generate executor cannot run a {action.kind!r} action")
        if not action.batch:  # a hand-made action: its window is now (keys stay deterministic per instant)
            action = replace(action, batch=batch_id(self.clock.now()))
        jobs = build_jobs(action, self.policy())
        added = await self.queue.enqueue(jobs, self.clock.now())
        state = {"enqueued": added, "existing": len(jobs) - added, "batch": action.batch, "first": action.first}
        if added == 0:
            return Outcome(OutcomeStatus.unchanged, reason=Reason.no_change, state=state)
        return Outcome(OutcomeStatus.applied, state=state)

    async def read_back(self, record: ActionRecord) -> ReadBack:
        p = record.params
        if p.get("held"):  # a planner row for held-back work (`plan_job.py`): nothing was to be queued
            return ReadBack(False, note="held back: nothing was queued")
        persona = record.subject.removeprefix("persona/")
        batch, first, count = str(p.get("batch", "")), int(p.get("first", 0)), int(p.get("count", 0))
        if not batch:
            return ReadBack(None, note="no batch in the journaled action: cannot tell")
        found = await self.queue.count_keys([job_key(persona, batch, first + i) for i in range(count)])
        return ReadBack(found == count, {"found": found, "count": count})


def _target(action: Action | ActionRecord) -> tuple[HoldKind, str, str, bool]:
    """(kind, subject, source, held) of a pause/drain action or its journal record."""
    if isinstance(action, PausePersona):
        return HoldKind.persona, action.persona, action.alert or MANUAL, action.paused
    if isinstance(action, DrainAccount):
        return HoldKind.account, f"{action.provider}/{action.account}", action.alert or MANUAL, action.drained
    if isinstance(action, ActionRecord):
        p = action.params
        source = str(p.get("alert") or MANUAL)
        if action.kind == PausePersona.kind:
            return HoldKind.persona, str(p.get("persona", "")), source, bool(p.get("paused"))
        if action.kind == DrainAccount.kind:
            return HoldKind.account, f"{p.get('provider')}/{p.get('account')}", source, bool(p.get("drained"))
    raise PermanentError(f"the hold executor cannot run a {getattr(action, 'kind', type(action).__name__)!r} action")


class HoldExecutor:
    """The `Executor` port for `PausePersona` and `DrainAccount` (register it for both kinds).

    `on_change(holds)` is called after every change, so this replica's planner, queue and
    dispatcher follow at once; the other replicas pick the change up from the table."""

    def __init__(
        self,
        store: HoldStore,
        policy: Callable[[], Policy],
        clock: Clock,
        actor: str,
        on_change: Callable[[Holds], None] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.actor = actor
        self.on_change = on_change

    def _check(self, kind: HoldKind, subject: str) -> None:
        pol = self.policy()
        if kind is HoldKind.persona and subject not in {p.name for p in pol.personas}:
            raise PermanentError(f"persona {subject!r} is not in the policy")
        if kind is HoldKind.account:
            known = {f"{p.name}/{a.name}" for p in pol.providers for a in p.accounts}
            if subject not in known:
                raise PermanentError(f"account {subject!r} is not in the policy (provider/account)")

    async def execute(self, action: Action) -> Outcome:
        kind, subject, source, held = _target(action)
        if held:  # releasing a name the policy no longer has is fine: it frees the row
            self._check(kind, subject)
        reason = action.reasons[0].value if action.reasons else Reason.manual.value
        changed = await self.store.set(kind, subject, source, held, reason=reason, actor=self.actor,
                                       at=self.clock.now())  # fmt: skip
        holds = await self.store.active()
        if self.on_change is not None:
            self.on_change(holds)
        still = subject in (holds.personas if kind is HoldKind.persona else holds.accounts)
        state = {"held": still, "source": source}
        if not changed:
            return Outcome(OutcomeStatus.unchanged, reason=Reason.no_change, state=state)
        return Outcome(OutcomeStatus.applied, state=state)

    async def read_back(self, record: ActionRecord) -> ReadBack:
        kind, subject, source, held = _target(record)
        hold = await self.store.get(kind, subject, source)
        current = hold.held if hold is not None else False
        return ReadBack(current == held, {"held": current, "source": source})
