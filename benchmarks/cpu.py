"""Where the CPU goes during a run: user + system seconds of each process group, from /proc.

Sampled with psutil before and after a run: the Herald workers (the `dramatiq` parent and
its worker processes), PostgreSQL (the postmaster and its backends), RabbitMQ (the node's
process tree), this harness (the SMTP sink runs in it) and the OpenAI-compatible server.
A backend that exits during the run takes its time with it; the pool keeps them alive.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

#: Process group name -> the pids it holds now.
Groups = dict[str, Callable[[], Iterable[int]]]


def tree(pid: int | None) -> list[int]:
    """`pid` and every process under it (empty when it is gone)."""
    if pid is None:
        return []
    try:
        parent = psutil.Process(pid)
        return [pid, *(c.pid for c in parent.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def postmaster(pgdata: Path | None) -> int | None:
    """The PostgreSQL server's pid, from its data directory."""
    if pgdata is None:
        return None
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def seconds(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


class CpuMeter:
    """`start()`, the run, `per_change(n)`: ms of CPU per change for each group."""

    def __init__(self, groups: Groups) -> None:
        self.groups = groups
        self._start: dict[str, dict[int, float]] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {pid: seconds([pid]) for pid in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self._start = self._sample()

    def per_change(self, changes: int) -> dict[str, float]:
        """ms of CPU per change, by group, since `start` (processes that began meanwhile
        count whole)."""
        end = self._sample()
        out: dict[str, float] = {}
        for name, now in end.items():
            before = self._start.get(name, {})
            spent = sum(t - before.get(pid, 0.0) for pid, t in now.items())
            out[name] = round(1000 * spent / changes, 3)
        out["total"] = round(sum(out.values()), 3)
        return out


def harness_groups(svc: object, workers: Callable[[], Iterable[int]]) -> Groups:
    """The groups of a benchmark run on `svc` (benchmarks.harness.Services)."""
    pgdata = getattr(svc.postgres, "pgdata", None)  # type: ignore[attr-defined]
    rabbit = getattr(svc.rabbitmq, "process", None)  # type: ignore[attr-defined]
    servers = getattr(svc, "openai", {})  # started when first asked for: read each time
    return {
        "workers": workers,
        "postgresql": lambda: tree(postmaster(pgdata)),
        "rabbitmq": lambda: tree(rabbit.pid if rabbit else None),
        "harness_and_smtp_sink": lambda: [os.getpid()],
        "openai_server": lambda: [p for proc, _ in servers.values() for p in tree(proc.pid)],
    }
