"""One implementation on one backend, in this process: its engine and tables, and checked runs."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from benchmarks.base import load
from benchmarks.envs import AsyncEnv, SyncEnv, count_rows, create_tables, empty, seed
from benchmarks.models import W7_SEEDED, expected
from benchmarks.settings import Backend


class WrongResult(AssertionError):
    """A workload returned or left something other than what it should have."""


def direct(function: Callable[[], Any], args: tuple[()]) -> Any:
    return function(*args)


class Bench:
    """The implementation ``name`` on ``backend``, with tables of its own (W3's, W5's and W8's seeded)."""

    def __init__(self, backend: Backend, name: str, seeded: int) -> None:
        cls = load(name)
        self.name, self.seeded, self.workloads = name, seeded, cls.workloads
        self.loop = asyncio.Runner() if cls.flavour == "async" else None
        self.env = AsyncEnv(backend) if self.loop else SyncEnv(backend)
        self.call(self.env.do(create_tables))
        for key in {"W3", "W5", "W8"} & set(self.workloads):
            self.call(self.env.do(seed, key, seeded))
        self.implementation = cls(self.env)

    def call(self, result: Any) -> Any:
        """``result`` itself in the sync flavour; the awaited coroutine in the async one."""
        return self.loop.run(result) if self.loop else result

    def run(self, workload: str, n: int, through: Callable[..., Any] = direct) -> float:
        """Run ``workload`` at size ``n`` as ``through(job, ())``; check it; return its wall-clock seconds.

        Writing workloads start from an empty table (W7's holding the rows its first upsert updates).
        Everything alive before the run is collected and frozen out of the garbage collector's work,
        so that every run starts alike. ``through`` is ``sys.call_tracing`` when callgrind counts: its
        entry and exit switch counting on and off.
        """
        if workload == "W7":
            self.call(self.env.do(seed, workload, W7_SEEDED))
        elif workload not in ("W3", "W5", "W8"):
            self.call(self.env.do(empty, workload))
        method, loop, seeded = self.implementation.method(workload), self.loop, self.seeded
        job = (lambda: loop.run(method(n, seeded))) if loop else (lambda: method(n, seeded))
        gc.collect()
        gc.freeze()
        started = time.perf_counter()
        result = through(job, ())
        seconds = time.perf_counter() - started
        want, rows = expected(workload, n, seeded)
        if result != want:
            raise WrongResult(f"{self.name} {workload}: returned {result}, expected {want}")
        left = self.call(self.env.do(count_rows, workload))
        if left != rows:
            raise WrongResult(f"{self.name} {workload}: left {left} rows, expected {rows}")
        return seconds

    def close(self) -> None:
        self.implementation.close()
        self.call(self.env.close())
        if self.loop:
            self.loop.close()
