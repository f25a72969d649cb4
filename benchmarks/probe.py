"""The measuring process: ``python -m benchmarks.probe BACKEND IMPLEMENTATIONS --sizes W1=100,...``.

For each implementation and workload: one warm-up run, then a run of ``n`` operations and one of
``2n``, each called through ``sys.call_tracing``, checked, and timed. :mod:`benchmarks.count` runs
this under callgrind, which counts instructions only inside ``sys.call_tracing`` and writes one
file per call. Prints a JSON list with one entry per implementation and workload: its ``seconds``
per run, ``traced`` (how many ``sys.call_tracing`` calls it made, so how many of those files are
its own) and any ``error``. ``--layout K`` allocates some objects before anything is imported, which
moves every later object, and so changes which names collide in CPython's type-attribute cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback
from typing import Any

WARMUP = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe", description=__doc__)
    parser.add_argument("backend")
    parser.add_argument("implementations", help="comma-separated names, or module:Class")
    parser.add_argument("--sizes", required=True, help="e.g. W1=100,W3=100")
    parser.add_argument("--seeded", type=int, default=1_000)
    parser.add_argument("--layout", type=int, default=0)
    args = parser.parse_args(argv)
    padding = [str(k) * (k % 40) for k in range(args.layout * 1_003)]  # noqa: F841 (kept alive)
    from benchmarks.bench import Bench
    from benchmarks.envs import private_backend

    sizes = {key: int(n) for key, n in (item.split("=") for item in args.sizes.split(","))}
    report: list[dict[str, Any]] = []
    with private_backend(args.backend) as backend:
        for name in args.implementations.split(","):
            try:
                bench = Bench(backend, name, args.seeded)
            except ImportError as exc:
                report.append({"implementation": name, "unavailable": f"{type(exc).__name__}: {exc}"})
                continue
            try:
                _instrument()
                for workload, n in sizes.items():
                    if workload in bench.workloads:
                        report.append(_measure(bench, workload, n))
            finally:
                bench.close()
    print(json.dumps(report))
    return 0


def _instrument() -> None:
    """Under ``callgrind --instr-atstart=no`` (which runs imports and set-up several times faster),
    switch instrumentation on now, and wait until it is: ``sys.call_tracing`` must be seen entered."""
    if os.environ.get("UOW_BENCH_INSTRUMENT") != "1":
        return
    os.environ["UOW_BENCH_INSTRUMENT"] = "0"
    command = ["callgrind_control", "--instr=on", str(os.getpid())]
    switching = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while switching.poll() is None:  # keep running code: valgrind takes the command between blocks
        pass
    if switching.returncode != 0:
        raise RuntimeError(f"callgrind_control failed: {switching.stdout.read() if switching.stdout else ''}")


def _measure(bench: Any, workload: str, n: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"implementation": bench.name, "workload": workload, "n": n, "traced": 0}

    def traced(job: Any, args: tuple[()]) -> Any:
        entry["traced"] += 1
        return sys.call_tracing(job, args)

    try:
        bench.run(workload, min(n, WARMUP))
        entry["seconds"] = [bench.run(workload, size, traced) for size in (n, 2 * n)]
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        traceback.print_exc()
    return entry


if __name__ == "__main__":
    sys.exit(main())
