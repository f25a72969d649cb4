"""Timing: every implementation of a workload, round-robin within each repetition, checked every time.

For one backend and one workload, each repetition runs every implementation once, starting one
further along the list each time so that no implementation always runs first or last; whatever drifts
(the machine's load, the database's caches) affects them all alike. Before the repetitions, each
implementation runs the workload once at a small size, untimed, to fill SQLAlchemy's statement caches
and the pool. Every timed run is followed by its check; a wrong result or an exception ends that
implementation's part of the workload and is reported.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.base import Implementation, Unavailable
from benchmarks.envs import AsyncEnv, SyncEnv
from benchmarks.models import w3_expected, w5_expected
from benchmarks.settings import Backend

WARMUP = 10


@dataclass(slots=True)
class Measurement:
    """The timed runs of one implementation of one workload on one backend."""

    backend: str
    workload: str
    implementation: str
    flavour: str
    size: int
    times: list[float] = field(default_factory=list)
    """Wall-clock seconds of each repetition."""
    cpu_times: list[float] = field(default_factory=list)
    """CPU seconds of this process (all its threads) in each repetition: blind to the database
    server's work, but also to whatever else keeps the machine's cores busy."""
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu_times) if self.cpu_times else None

    @property
    def spread(self) -> float | None:
        """(slowest - fastest) / median: how much the repetitions disagreed."""
        median = self.median
        if not median or len(self.times) < 2:
            return None
        return (max(self.times) - min(self.times)) / median


def expected(workload: str, n: int, seeded: int) -> tuple[int, int]:
    """What a run of ``workload`` returns, and how many rows its table holds afterwards."""
    if workload == "W3":
        return w3_expected(n, seeded), seeded
    if workload == "W5":
        return w5_expected(n, seeded), seeded
    if workload == "W4":
        return n, 0
    return n, n


Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BackendRun:
    """The engines of one backend, the implementations on them, and the loop for the async ones."""

    def __init__(self, backend: Backend, classes: Sequence[type[Implementation]], log: Log) -> None:
        self.backend = backend
        self.log = log
        self.loop = asyncio.Runner()
        self.sync_env = SyncEnv(backend)
        self.sync_env.create()
        self.async_env: AsyncEnv | None = None
        if any(cls.flavour == "async" for cls in classes):
            self.async_env = AsyncEnv(backend)
            self.loop.run(self.async_env.create())
        self.implementations: list[Implementation] = []
        self.unavailable: dict[str, str] = {}
        for cls in classes:
            try:
                self.implementations.append(cls(self.env(cls.flavour)))
            except Unavailable as exc:
                self.unavailable[cls.name] = str(exc)
                log(f"  {cls.name}: left out: {exc}")

    def env(self, flavour: str) -> Any:
        return self.async_env if flavour == "async" else self.sync_env

    def call(self, flavour: str, result: Any) -> Any:
        """``result`` itself for the sync flavour; run to completion on the loop for the async one."""
        return self.loop.run(result) if flavour == "async" else result

    def close(self) -> None:
        for implementation in self.implementations:
            implementation.close()
        if self.async_env is not None:
            self.loop.run(self.async_env.close())
        self.loop.close()
        self.sync_env.close()

    def timed(
        self, implementation: Implementation, workload: str, n: int, seeded: int
    ) -> tuple[float, float, int]:
        """Run ``workload``; its wall-clock seconds, CPU seconds and result."""
        method = implementation.method(workload)
        gc.collect()
        if implementation.flavour == "async":

            async def run() -> tuple[float, float, int]:
                started, cpu = time.perf_counter(), time.process_time()
                result = await method(n, seeded)
                return time.perf_counter() - started, time.process_time() - cpu, result

            elapsed, cpu, result = self.loop.run(run())
        else:
            started, cpu = time.perf_counter(), time.process_time()
            result = method(n, seeded)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        return elapsed, cpu, int(result)

    def prepare(self, implementation: Implementation, workload: str, writes: bool) -> None:
        if writes:
            env = self.env(implementation.flavour)
            self.call(implementation.flavour, env.reset(workload))

    def check(self, implementation: Implementation, workload: str, n: int, seeded: int, result: int) -> None:
        want_result, want_rows = expected(workload, n, seeded)
        if result != want_result:
            raise AssertionError(f"wrong result: returned {result}, expected {want_result}")
        env = self.env(implementation.flavour)
        rows = self.call(implementation.flavour, env.count(workload))
        if rows != want_rows:
            raise AssertionError(f"wrong table content: {rows} rows, expected {want_rows}")

    def seed(self, workload: str, seeded: int) -> None:
        self.sync_env.seed(workload, seeded)
        if self.async_env is not None and not self.backend.shared:
            self.loop.run(self.async_env.seed(workload, seeded))

    def workload(self, workload: str, n: int, seeded: int, writes: bool, reps: int) -> list[Measurement]:
        """Measure every implementation that runs ``workload``, ``reps`` times each."""
        taking = [i for i in self.implementations if workload in i.workloads]
        measurements = {
            i.name: Measurement(self.backend.name, workload, i.name, i.flavour, i.size(workload, n))
            for i in taking
        }
        if not writes:
            self.seed(workload, seeded)
        for implementation in taking:
            try:
                self.prepare(implementation, workload, writes)
                self.timed(
                    implementation, workload, min(measurements[implementation.name].size, WARMUP), seeded
                )
            except Exception as exc:
                self.fail(implementation, measurements[implementation.name], exc, "warm-up", writes, seeded)
        # Everything alive now (engines, caches, the workload's data) stays alive throughout: keep it out
        # of the collections, so that the collection before each run is short and alike for everyone.
        gc.collect()
        gc.freeze()
        for rep in range(reps):
            live = [i for i in taking if measurements[i.name].error is None]
            shift = rep % len(live) if live else 0
            for implementation in live[shift:] + live[:shift]:
                measurement = measurements[implementation.name]
                try:
                    self.prepare(implementation, workload, writes)
                    elapsed, cpu, result = self.timed(implementation, workload, measurement.size, seeded)
                    self.check(implementation, workload, measurement.size, seeded, result)
                except Exception as exc:
                    self.fail(implementation, measurement, exc, f"repetition {rep + 1}", writes, seeded)
                    continue
                measurement.times.append(elapsed)
                measurement.cpu_times.append(cpu)
            self.log(
                f"  {self.backend.name} {workload} rep {rep + 1}/{reps}: "
                + ", ".join(
                    f"{m.implementation} {m.times[-1]:.3f}s"
                    for m in measurements.values()
                    if len(m.times) > rep
                )
            )
        return list(measurements.values())

    def fail(
        self,
        implementation: Implementation,
        measurement: Measurement,
        exc: Exception,
        when: str,
        writes: bool,
        seeded: int,
    ) -> None:
        measurement.error = f"{when}: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        self.log(
            f"  {measurement.backend} {measurement.workload} {measurement.implementation} FAILED ({when})"
        )
        self.log("".join(traceback.format_exception(exc)).rstrip())
        try:  # leave the connection and the table as the others expect them
            implementation.recover()
            if writes:
                env = self.env(measurement.flavour)
                self.call(measurement.flavour, env.reset(measurement.workload))
            else:
                self.seed(measurement.workload, seeded)
        except Exception as cleanup:
            self.log(f"  (emptying the table failed too: {cleanup!r})")
