"""What observing units costs: Python calls and time per unit with observability off and on.

``python -m benchmarks.observe`` runs W1 (insert one row and commit), W3 (read one row by key) and W4
(insert, flush, roll back) of the sync ``UnitOfWork``, and W1 of the ``AsyncUnitOfWork``, on in-memory
SQLite, each mode in a fresh process:

- ``off``: nothing watches the units (the default);
- ``debug``: the ``uow`` logger enabled for DEBUG, its lines going to a ``NullHandler``;
- ``otel-noop``: ``uow.otel.instrument()`` with the OpenTelemetry API's no-op providers;
- ``otel-sdk``: ``uow.otel.instrument()`` with the SDK, spans to the in-memory exporter through a
  ``SimpleSpanProcessor``, metrics to the in-memory reader.

Calls per unit are counted with cProfile (noise-free: compare ``off`` with the same count before a
change); time per unit is the median of a few runs, for scale only. The ``otel`` modes need
``opentelemetry-sdk`` (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import pstats
import statistics
import subprocess
import sys
from typing import Any

MODES = ("off", "debug", "otel-noop", "otel-sdk")
WORKLOADS = ("W1", "W3", "W4", "W1 async")


def _setup(mode: str) -> None:
    if mode == "debug":
        logger = logging.getLogger("uow")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(logging.NullHandler())
    elif mode == "otel-noop":
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.trace import NoOpTracerProvider

        import uow.otel

        uow.otel.instrument(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    elif mode == "otel-sdk":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        import uow.otel

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        uow.otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)


def child(mode: str, n: int, reps: int) -> dict[str, dict[str, float]]:
    """In a fresh process: calls and seconds per unit of each workload in `mode`."""
    from benchmarks.bench import Bench
    from benchmarks.envs import private_backend

    _setup(mode)
    report: dict[str, dict[str, float]] = {}
    with private_backend("sqlite-memory") as backend:
        for name, workloads in (("uow", ("W1", "W3", "W4")), ("uow-async", ("W1",))):
            bench = Bench(backend, name, 1000)
            try:
                for workload in workloads:
                    calls: list[float] = []

                    def profiled(job: Any, args: tuple[()], calls: list[float] = calls) -> Any:
                        profile = cProfile.Profile()
                        result = profile.runcall(job, *args)
                        stats: Any = pstats.Stats(profile)
                        calls.append(sum(entry[1] for entry in stats.stats.values()) / n)
                        return result

                    bench.run(workload, 10)
                    bench.run(workload, n, profiled)
                    seconds = statistics.median(bench.run(workload, n) for _ in range(reps))
                    key = workload if name == "uow" else f"{workload} async"
                    report[key] = {"calls": calls[0], "s": seconds / n}
            finally:
                bench.close()
    return report


def measure(modes: tuple[str, ...], n: int, reps: int) -> dict[str, dict[str, dict[str, float]]]:
    results = {}
    for mode in modes:
        process = subprocess.run(
            [sys.executable, "-m", "benchmarks.observe", "--child", mode, "-n", str(n), "--reps", str(reps)],
            capture_output=True,
            text=True,
            check=False,
        )
        if process.returncode != 0:
            raise RuntimeError(f"mode {mode} failed:\n{process.stderr.strip()}")
        results[mode] = json.loads(process.stdout)
    return results


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    header = [
        "workload (sqlite-memory)",
        *(f"{mode} calls" for mode in results),
        *(f"{m} µs" for m in results),
    ]
    rows = [header, ["---"] * len(header)]
    for workload in WORKLOADS:
        row = [workload]
        row += [f"{results[mode][workload]['calls']:.0f}" for mode in results]
        row += [f"{results[mode][workload]['s'] * 1e6:.0f}" for mode in results]
        rows.append(row)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.observe", description=__doc__)
    parser.add_argument("--modes", default=",".join(MODES), help=f"some of {', '.join(MODES)}")
    parser.add_argument("-n", type=int, default=500, help="units per measurement")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        print(json.dumps(child(options.child, options.n, options.reps)))
        return 0
    modes = tuple(mode.strip() for mode in options.modes.split(",") if mode.strip())
    print(table(measure(modes, options.n, options.reps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
