"""Wall-clock time per operation, with pyperf: ``python -m benchmarks.wall BACKEND IMPLEMENTATION``.

A pyperf script: each workload of the implementation is a benchmark named ``BACKEND WORKLOAD
IMPLEMENTATION`` whose loop count (pyperf calibrates it) is the workload's size, so pyperf's values are
seconds per operation (per row for W2). pyperf runs every benchmark in fresh worker processes
(warm-ups, several values each, different hash seeds) and reports their statistics; any pyperf option
applies (``--fast``, ``--rigorous``, ``-o results.json``; ``python -m pyperf compare_to`` compares two
such files). Every run is checked as in the counting probes. :func:`measure` runs the script for
:mod:`benchmarks.__main__` and returns the medians.
"""

from __future__ import annotations

import atexit
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pyperf  # type: ignore[import-untyped]

from benchmarks.count import ROOT

_bench: Any = None


def _time(loops: int, backend: str, implementation: str, workload: str, seeded: int) -> float:
    global _bench
    if _bench is None:  # each worker process runs one benchmark: set it up on the first call
        from benchmarks.bench import Bench
        from benchmarks.envs import private_backend

        stack = ExitStack()
        atexit.register(stack.close)
        _bench = Bench(stack.enter_context(private_backend(backend)), implementation, seeded)
        stack.callback(_bench.close)
    seconds: float = _bench.run(workload, loops)
    return seconds


def main() -> None:
    from benchmarks.base import load

    def forward(command: list[str], args: Any) -> None:
        command += [args.backend, args.implementation, "--only", args.only, "--seeded", str(args.seeded)]

    runner = pyperf.Runner(program_args=("-m", "benchmarks.wall"), add_cmdline_args=forward)
    runner.argparser.add_argument("backend")
    runner.argparser.add_argument("implementation")
    runner.argparser.add_argument("--only", default="W1,W2,W3,W4,W5,W6,W7,W8")
    runner.argparser.add_argument("--seeded", type=int, default=10_000)
    args = runner.parse_args()
    workloads = load(args.implementation).workloads
    for workload in args.only.split(","):
        if workload in workloads:
            name = f"{args.backend} {workload} {args.implementation}"
            runner.bench_time_func(name, _time, args.backend, args.implementation, workload, args.seeded)


def measure(
    backend: str, implementation: str, workloads: list[str], seeded: int, options: list[str]
) -> dict[str, float]:
    """The median seconds per operation of each benchmark; raises if pyperf or a run failed."""
    with tempfile.TemporaryDirectory(prefix="uow-bench-wall-") as out:
        output = Path(out) / "wall.json"
        command = [sys.executable, "-m", "benchmarks.wall", backend, implementation, "--only"]
        command += [",".join(workloads), "--seeded", str(seeded), "--quiet", "-o", str(output), *options]
        command += ["--inherit-environ", "UOW_BENCH_POSTGRESQL_URL"]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        if done.returncode != 0:
            raise RuntimeError("\n".join(done.stderr.strip().splitlines()[-15:]))
        return {bench.get_name(): bench.median() for bench in pyperf.BenchmarkSuite.load(str(output))}


if __name__ == "__main__":
    main()
