"""Run probes, natively or under callgrind, side by side; instructions per operation from their files.

Callgrind starts each probe uninstrumented (the probe switches instrumentation on once it is set up)
and with counting off, counts only while ``sys.call_tracing`` runs (``--toggle-collect``), which the
probe calls for exactly the measured runs, and writes the count of each such call to a file of its
own (``--dump-after``). A run of ``n`` operations and one of ``2n`` give ``(count(2n) - count(n)) / n``
instructions per operation: what the two runs share (entering the call, an event loop's start and
stop) cancels out. Counts do not depend on the machine's load, so probes run as many at a time as
there are cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CALLGRIND = (
    "valgrind",
    "--tool=callgrind",
    "--instr-atstart=no",
    "--collect-atstart=no",
    "--toggle-collect=sys_call_tracing",
    "--dump-after=sys_call_tracing",
    "--dump-instr=no",
    "--dump-line=no",
)
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Probe:
    """One process to run: implementations of one backend, and how."""

    backend: str
    implementations: tuple[str, ...]
    sizes: dict[str, int]
    seeded: int
    layout: int = 0
    counted: bool = True


def environment(layout: int, counted: bool = False) -> dict[str, str]:
    """The environment of a measured process: fixed string hashes, and bytecode files written and read."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONHASHSEED=str(layout), UOW_BENCH_INSTRUMENT="1" if counted else "0")
    return env


def valgrind_missing() -> str | None:
    return None if shutil.which("valgrind") else "valgrind is not installed: no instruction counts"


def run(probe: Probe) -> list[dict[str, Any]]:
    """The probe's entries, with ``instructions`` per traced run when counted; raises if it crashed."""
    command = [sys.executable, "-m", "benchmarks.probe", probe.backend, ",".join(probe.implementations)]
    command += ["--sizes", ",".join(f"{k}={n}" for k, n in probe.sizes.items())]
    command += ["--seeded", str(probe.seeded), "--layout", str(probe.layout)]
    with tempfile.TemporaryDirectory(prefix="uow-bench-cg-") as out:
        if probe.counted:
            command = [*CALLGRIND, f"--callgrind-out-file={out}/cg.%p", *command]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment(probe.layout, probe.counted),
            cwd=ROOT,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"probe {probe.backend} {','.join(probe.implementations)} crashed:\n{tail}")
        entries: list[dict[str, Any]] = json.loads(done.stdout)
        if probe.counted:
            _attach(entries, sorted(Path(out).glob("cg.*.*"), key=lambda p: int(p.suffix[1:])))
    for entry in entries:
        entry.update(backend=probe.backend, layout=probe.layout, counted=probe.counted)
    return entries


def _attach(entries: list[dict[str, Any]], dumps: list[Path]) -> None:
    if len(dumps) != sum(entry.get("traced", 0) for entry in entries):
        raise RuntimeError(f"callgrind wrote {len(dumps)} files for the probe's traced runs")
    counts = iter(total(dump) for dump in dumps)
    for entry in entries:
        entry["instructions"] = [next(counts) for _ in range(entry.get("traced", 0))]
        if not entry.get("error") and not entry["instructions"][0]:
            raise RuntimeError("callgrind counted nothing: does it see CPython's sys_call_tracing symbol?")


def total(dump: Path) -> int:
    """The instruction count in a callgrind file."""
    match = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no total in {dump}")
    return int(match.group(1))


def run_all(
    probes: Sequence[Probe], jobs: int, *others: Callable[[], Any]
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Every probe's entries (a probe that crashed gives one entry with its ``error``), and the results of
    ``others``, run in the same pool (an exception in one of them is its result)."""

    def one(probe: Probe) -> list[dict[str, Any]]:
        try:
            return run(probe)
        except Exception as exc:
            return [
                {
                    "backend": probe.backend,
                    "implementation": ",".join(probe.implementations),
                    "workload": "-",
                    "error": str(exc),
                }
            ]

    def guarded(other: Callable[[], Any]) -> Any:
        try:
            return other()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rest = [pool.submit(guarded, other) for other in others]  # the longest first
        entries = [entry for entries in pool.map(one, probes) for entry in entries]
        return entries, [future.result() for future in rest]
