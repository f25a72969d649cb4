"""What the in-process comparison cannot see: uow's cost to plain sessions, and calls per operation.

uow registers some listeners on SQLAlchemy's ``Engine`` class, which every engine of the process
then dispatches through, whether a unit uses it or not. The main run measures everything in one
process, so its plain-SQLAlchemy baseline already pays that cost once uow has run. This measurement
runs the plain ORM in fresh processes, alternately one where uow is never imported ("clean") and one
where a unit ran first ("taxed"), on in-memory SQLite, and reports:

- the slowdown of plain sessions in the taxed process (the "tax"), in wall-clock and CPU time;
- Python function calls per operation (counted with cProfile, so immune to the machine's noise) of
  plain SQLAlchemy in a clean process, of plain SQLAlchemy in a taxed one, and of uow.

``uow calls / clean calls`` is the most direct noise-free measure of uow's overhead.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.settings import RATIO_WORKLOADS, WORKLOADS

PROFILED_OPS = 100


@dataclass(slots=True)
class TaxResult:
    sizes: dict[str, int]
    processes: int
    clean: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    taxed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    error: str | None = None

    def _median(self, side: dict[str, list[dict[str, Any]]], workload: str, key: str) -> float | None:
        values = [run[key] for run in side.get(workload, []) if run.get(key) is not None]
        return statistics.median(values) if values else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sizes": self.sizes,
            "processes": self.processes,
            "summary": self.summary(),
            "error": self.error,
        }

    def summary(self) -> list[dict[str, Any]]:
        """Per workload: the tax (taxed / clean time of plain sessions) and calls per operation."""
        rows = []
        for workload in self.sizes:
            clean_s = self._median(self.clean, workload, "s")
            taxed_s = self._median(self.taxed, workload, "s")
            clean_cpu = self._median(self.clean, workload, "cpu")
            taxed_cpu = self._median(self.taxed, workload, "cpu")
            clean_calls = self._median(self.clean, workload, "calls")
            uow_calls = self._median(self.taxed, workload, "uow_calls")
            rows.append(
                {
                    "workload": workload,
                    "tax_wall": taxed_s / clean_s if clean_s and taxed_s else None,
                    "tax_cpu": taxed_cpu / clean_cpu if clean_cpu and taxed_cpu else None,
                    "plain_calls_clean": clean_calls,
                    "plain_calls_taxed": self._median(self.taxed, workload, "calls"),
                    "uow_calls": uow_calls,
                    "uow_calls_ratio": uow_calls / clean_calls if clean_calls and uow_calls else None,
                }
            )
        return rows


def measure(sizes: dict[str, int], reps: int, processes: int, seeded: int) -> TaxResult:
    """Alternate clean and taxed processes, ``processes`` of each."""
    result = TaxResult({k: v for k, v in sizes.items() if k in RATIO_WORKLOADS}, processes)
    arguments = [
        "--sizes",
        ",".join(f"{k}={v}" for k, v in result.sizes.items()),
        "--reps",
        str(reps),
        "--seeded",
        str(seeded),
    ]
    try:
        for run in range(processes):
            for mode in ("clean", "taxed") if run % 2 == 0 else ("taxed", "clean"):
                child = subprocess.run(
                    [sys.executable, "-m", "benchmarks.tax", "--mode", mode, *arguments],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if child.returncode != 0:
                    raise RuntimeError(f"the {mode} process failed:\n{child.stderr.strip()}")
                side = result.clean if mode == "clean" else result.taxed
                for workload, values in json.loads(child.stdout).items():
                    side.setdefault(workload, []).append(values)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def _calls(run: Any, workload: str, reset: Any) -> float:
    reset(workload)
    profile = cProfile.Profile()
    profile.enable()
    run(PROFILED_OPS)
    profile.disable()
    stats: Any = pstats.Stats(profile)
    return float(sum(entry[1] for entry in stats.stats.values())) / PROFILED_OPS


def child(mode: str, sizes: dict[str, int], reps: int, seeded: int) -> dict[str, dict[str, Any]]:
    """In a fresh process: time the plain ORM (after one uow unit if ``mode`` is 'taxed'); count calls."""
    from benchmarks.envs import SyncEnv
    from benchmarks.impl_orm import Orm
    from benchmarks.settings import make_backend

    env = SyncEnv(make_backend("sqlite-memory", Path("."), ""))
    env.create()
    for key in ("W3", "W5"):
        env.seed(key, seeded)

    def reset(workload: str) -> None:
        if WORKLOADS[workload].writes:
            env.reset(workload)

    orm = Orm(env)
    ours: Any = None
    if mode == "taxed":
        from benchmarks.impl_uow import Uow

        ours = Uow(env)
        reset("W3")
        ours.method("W3")(1, seeded)  # one unit: uow's listeners are now registered
    report: dict[str, dict[str, Any]] = {}
    for workload, n in sizes.items():
        method = orm.method(workload)
        reset(workload)
        method(min(n, 10), seeded)
        times, cpus = [], []
        for _ in range(reps):
            reset(workload)
            gc.collect()
            started, cpu = time.perf_counter(), time.process_time()
            method(n, seeded)
            times.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
        report[workload] = {
            "s": statistics.median(times) / n,
            "cpu": statistics.median(cpus) / n,
            "calls": _calls(lambda k, m=method: m(k, seeded), workload, reset),
        }
        if ours is not None:
            theirs = ours.method(workload)
            reset(workload)
            theirs(min(n, 10), seeded)
            report[workload]["uow_calls"] = _calls(lambda k, m=theirs: m(k, seeded), workload, reset)
    env.close()
    from sqlalchemy import Engine

    if mode == "clean" and getattr(Engine, "_has_events", False):
        raise AssertionError("the clean process has listeners on the Engine class")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tax", description=__doc__)
    parser.add_argument("--mode", choices=("clean", "taxed"), required=True)
    parser.add_argument("--sizes", required=True, help="e.g. W1=1000,W3=1000")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seeded", type=int, default=1000)
    options = parser.parse_args(argv)
    sizes = {key: int(value) for key, value in (item.split("=") for item in options.sizes.split(","))}
    print(json.dumps(child(options.mode, sizes, options.reps, options.seeded)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
