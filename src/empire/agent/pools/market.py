"""A simulated market: what the platforms pay for published tracks. PURE and seeded.

Why a simulator: the spend allocator (`allocating.py`) learns from revenue that is noisy, arrives
weeks after the spend and drifts; whether it beats a fixed release cadence can only be measured
against a market whose true rates are known (and hidden from the allocator). `benchmarks/business.py`
runs every strategy against the same market; the tests pin its accounting on a tiny hand-computed
case; later the simulated platforms (the embedded default) report from it.

The truth, per persona and day:
- a *rate*: expected lifetime revenue of one track, `base * genre factor * drift * hot`. The base
  is log-normal across personas (a few earn much more than most), the genre factor log-normal per
  (persona, genre), the drift a log random walk (a persona's audience grows or fades), `hot` a
  transient multiplier (a trend: x1.5-3 for one to three weeks);
- a *trend signal* the operation can observe at once (streams this week over last week): the hot
  multiplier now over a week ago, with noise. Revenue shows a trend weeks late; this shows it now.

One track published on `day` earns `rate * noise` over its lifetime (`noise` log-normal, mean 1:
most tracks earn little, a few are hits), split across the persona's platforms by fixed shares.
Each platform pays it out over weeks (`Platform.weekly`: the share paid in week k after
publication, spread evenly over that week's 7 days) and reports `lag` days late. `revenue(track,
day)` is what the operation can see on `day`: the cumulative payout reported so far.

Everything random is drawn from the seed and the track's identity (persona, genre, day, index), so
two strategies that publish the same track get the same draw (common random numbers: the
comparison measures the strategies, not the dice).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["PLATFORMS", "Market", "MarketPersona", "Platform", "Track", "generate_market"]


@dataclass(frozen=True)
class Platform:
    name: str
    weekly: tuple[float, ...]  # share of a track's revenue paid in week 0, 1, ... (sums to 1)
    lag: int = 0  # days before a day's payout is reported

    def paid(self, age: int) -> float:
        """Share of the lifetime revenue reported `age` days after publication."""
        seen = age - self.lag  # days of payout visible
        if seen <= 0:
            return 0.0
        weeks, days = divmod(seen, 7)
        done = sum(self.weekly[:weeks])
        if weeks < len(self.weekly):
            done += self.weekly[weeks] * days / 7
        return min(1.0, done)


PLATFORMS: tuple[Platform, ...] = (
    Platform("tiktok", (0.55, 0.25, 0.12, 0.08), lag=1),
    Platform("instagram", (0.5, 0.3, 0.15, 0.05), lag=1),
    Platform("youtube", (0.3, 0.22, 0.15, 0.1, 0.08, 0.06, 0.05, 0.04), lag=2),
    Platform("spotify", (0.15, 0.15, 0.13, 0.12, 0.1, 0.09, 0.08, 0.07, 0.06, 0.05), lag=5),
)


@dataclass(frozen=True)
class MarketPersona:
    name: str
    genres: tuple[str, ...]
    provider: str
    cost: float  # per track
    shares: dict[str, float]  # platform -> share of a track's revenue (sums to 1)
    base: float  # expected lifetime revenue per track at day 0, before the genre factor
    genre_factor: dict[str, float]


@dataclass(frozen=True)
class Track:
    persona: str
    genre: str
    day: int
    n: int  # index among the persona's tracks that day
    cost: float
    lifetime: float  # hidden: total revenue it will earn


@dataclass
class Market:
    """The hidden truth over `days` days (the horizon plus the payout tail)."""

    personas: tuple[MarketPersona, ...]
    platforms: tuple[Platform, ...]
    drift: dict[str, list[float]]  # persona -> multiplier per day
    hot: dict[str, list[float]]  # persona -> transient multiplier per day
    noise_sigma: float = 0.8
    trend_noise: float = 0.1
    seed: int = 0
    _by_name: dict[str, MarketPersona] = field(init=False, repr=False)
    _platforms: dict[str, Platform] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {p.name: p for p in self.personas}
        self._platforms = {p.name: p for p in self.platforms}

    def persona(self, name: str) -> MarketPersona:
        return self._by_name[name]

    def rate(self, persona: str, genre: str, day: int) -> float:
        """True expected lifetime revenue of one track published on `day` (what an oracle knows)."""
        p = self._by_name[persona]
        return p.base * p.genre_factor[genre] * self.drift[persona][day] * self.hot[persona][day]

    def trend(self, persona: str, day: int) -> float:
        """The observable trend signal: streams this week over last week (hot now / hot a week ago)."""
        h = self.hot[persona]
        ratio = h[day] / h[max(0, day - 7)]
        return ratio * math.exp(random.Random(_digest(self.seed, "trend", persona, day)).gauss(0, self.trend_noise))

    def publish(self, persona: str, genre: str, day: int, n: int) -> Track:
        """One published track; its lifetime revenue is drawn from its identity (same track, same draw)."""
        p = self._by_name[persona]
        z = random.Random(_digest(self.seed, "track", persona, genre, day, n)).gauss(0, 1)
        noise = math.exp(self.noise_sigma * z - self.noise_sigma**2 / 2)
        return Track(persona, genre, day, n, p.cost, self.rate(persona, genre, day) * noise)

    def revenue(self, track: Track, day: int, platform: str | None = None) -> float:
        """Cumulative revenue of `track` reported by `day` (on one platform, or all of them)."""
        shares = self._by_name[track.persona].shares
        names = [platform] if platform is not None else list(shares)
        age = day - track.day
        return sum(track.lifetime * shares.get(n, 0.0) * self._platforms[n].paid(age) for n in names)

    @property
    def tail(self) -> int:
        """Days after publication by which every platform has reported everything."""
        return max(7 * len(p.weekly) + p.lag for p in self.platforms)


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


GENRES = ("lofi", "house", "ambient", "trap", "pop", "indie", "synthwave", "jazz", "drill", "kpop", "afro", "metal")
PROVIDERS = (("suno", 0.8), ("udio", 1.0), ("stable-audio", 1.3))


def generate_market(
    seed: int,
    personas: int = 120,
    days: int = 182,
    *,
    platforms: Sequence[Platform] = PLATFORMS,
    rate_sigma: float = 1.0,
    genre_sigma: float = 0.35,
    drift_weekly: float = 0.1,
    hot_per_day: float = 1 / 150,
) -> Market:
    """A market of `personas` personas over `days` days plus the payout tail, drawn from `seed`."""
    rng = random.Random(seed)
    horizon = days + max(7 * len(p.weekly) + p.lag for p in platforms) + 1
    out: list[MarketPersona] = []
    drift: dict[str, list[float]] = {}
    hot: dict[str, list[float]] = {}
    for i in range(personas):
        name = f"persona-{i:03d}"
        genres = tuple(rng.sample(GENRES, rng.randint(1, 3)))
        provider, cost = PROVIDERS[rng.randrange(len(PROVIDERS))]
        on = rng.sample([p.name for p in platforms], rng.randint(2, len(platforms)))
        weights = [rng.gammavariate(2.0, 1.0) for _ in on]
        shares = {n: w / sum(weights) for n, w in zip(on, weights, strict=True)}
        base = 1.2 * math.exp(rng.gauss(0, rate_sigma) - rate_sigma**2 / 2)
        factor = {g: math.exp(rng.gauss(0, genre_sigma)) for g in genres}
        level, walk = 0.0, []
        for _ in range(horizon):
            walk.append(math.exp(level))
            level += rng.gauss(0, drift_weekly / math.sqrt(7))
        mult = [1.0] * horizon
        day = 0
        while day < horizon:
            if rng.random() < hot_per_day:
                length, peak = rng.randint(7, 21), rng.uniform(1.5, 3.0)
                for d in range(day, min(horizon, day + length)):
                    mult[d] = peak
                day += length
            day += 1
        out.append(MarketPersona(name, genres, provider, cost, shares, base, factor))
        drift[name], hot[name] = walk, mult
    return Market(tuple(out), tuple(platforms), drift, hot, seed=seed)
