"""Provider adapters: a generic HTTP job API and a seeded simulated one, behind `JobProvider`."""

from empire.agent.pools.providers.base import JobProvider, JobRequest, PollResult, Submission
from empire.agent.pools.providers.http import CallbackHub, HttpJobProvider
from empire.agent.pools.providers.simulated import SimulatedProvider, simulated_audio

__all__ = [
    "CallbackHub",
    "HttpJobProvider",
    "JobProvider",
    "JobRequest",
    "PollResult",
    "SimulatedProvider",
    "Submission",
    "simulated_audio",
]
