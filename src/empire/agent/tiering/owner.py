"""Who runs a move, and is it still running? The liveness half of the move lease.

A move row carries its owner and a lease the owner renews at every step. Recovery takes a move
over when the lease has expired, or at once when the owner ran on this host and that process is
gone (kill -9, OOM, a container restart): a crashed move on the same machine is recovered at the
next start instead of after the lease. The owner string is `host/pid/start/random`: the process
start time tells a dead process from a new one that reused its pid (PID 1 in a restarted
container), the random part tells two movers of one process apart.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

__all__ = ["owner_is_dead_here", "process_owner"]


def _start_ticks(pid: int) -> str | None:
    """The process start time in clock ticks since boot (/proc/PID/stat field 22); None when
    there is no such live process, or no /proc (then only the lease decides)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "; comm may contain spaces
    if fields[0] in ("Z", "X"):  # a zombie has finished: it will never renew a lease
        return None
    return fields[19]


def process_owner() -> str:
    """A new owner id for a mover of this process."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{pid}/{_start_ticks(pid) or '?'}/{uuid.uuid4().hex[:8]}"


def owner_is_dead_here(owner: str | None) -> bool:
    """True only when `owner` ran on this host and that exact process no longer exists."""
    if not owner:
        return True  # a move journaled before leases existed
    try:
        host, pid, start, _ = owner.split("/")
    except ValueError:
        return False
    if host != socket.gethostname() or start == "?" or not Path("/proc/self/stat").exists():
        return False
    return _start_ticks(int(pid)) != start
