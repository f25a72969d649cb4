"""Import time: ``import uow`` against ``import sqlalchemy.orm``, each in fresh processes.

Each run is a new interpreter that times the one import statement with ``perf_counter``; the two
imports alternate, after one untimed run of each (to warm the disk cache and the bytecode files), and
the medians are compared. ``import uow`` includes ``sqlalchemy.orm``, so the ratio is the cost of what
uow adds. One ``-X importtime`` run then names the modules ``import uow`` loads beyond
``sqlalchemy.orm``, the most expensive first.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

MODULES = ("sqlalchemy.orm", "uow")
_TIMER = (
    "import time; t, c = time.perf_counter(), time.process_time(); import {}; "
    "print(time.perf_counter() - t, time.process_time() - c)"
)


@dataclass(slots=True)
class ImportResult:
    runs: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    cpu_seconds: dict[str, list[float]] = field(default_factory=dict)
    """CPU time of the import in each run: less disturbed by other load on the machine."""
    added: list[tuple[str, int, int]] = field(default_factory=list)
    """Modules that ``import uow`` loads beyond ``sqlalchemy.orm``: (name, self µs, cumulative µs)."""
    error: str | None = None

    def median(self, module: str, cpu: bool = False) -> float | None:
        times = (self.cpu_seconds if cpu else self.seconds).get(module)
        return statistics.median(times) if times else None

    @property
    def ratio(self) -> float | None:
        base, ours = self.median("sqlalchemy.orm"), self.median("uow")
        return ours / base if base and ours else None

    @property
    def best_ratio(self) -> float | None:
        """The ratio of the fastest runs: what the imports cost with the least interference."""
        base, ours = self.seconds.get("sqlalchemy.orm"), self.seconds.get("uow")
        return min(ours) / min(base) if base and ours else None

    @property
    def cpu_ratio(self) -> float | None:
        base, ours = self.median("sqlalchemy.orm", cpu=True), self.median("uow", cpu=True)
        return ours / base if base and ours else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "median_s": {module: self.median(module) for module in MODULES},
            "cpu_median_s": {module: self.median(module, cpu=True) for module in MODULES},
            "ratio": self.ratio,
            "cpu_ratio": self.cpu_ratio,
            "best_ratio": self.best_ratio,
            "added_modules_us": self.added[:15],
            "error": self.error,
        }


def _time_import(module: str, cwd: str) -> tuple[float, float]:
    completed = subprocess.run(
        [sys.executable, "-c", _TIMER.format(module)], capture_output=True, text=True, check=True, cwd=cwd
    )
    wall, cpu = completed.stdout.split()
    return float(wall), float(cpu)


def _added_modules(cwd: str) -> list[tuple[str, int, int]]:
    """The modules that ``import uow`` loads after ``import sqlalchemy.orm``: (name, self µs, cumulative µs).

    Sorted by their own time, the most expensive first.
    """
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import sqlalchemy.orm; import uow"],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    rows = [line.split("|") for line in completed.stderr.splitlines() if line.startswith("import time:")]
    rows = [row for row in rows if len(row) == 3 and row[1].strip().isdigit()]
    last = max(i for i, row in enumerate(rows) if row[2].strip() == "sqlalchemy.orm")
    added = [
        (row[2].strip(), int(row[0].removeprefix("import time:")), int(row[1])) for row in rows[last + 1 :]
    ]
    added.sort(key=lambda item: item[1], reverse=True)
    return added


def measure(runs: int) -> ImportResult:
    result = ImportResult(runs, {module: [] for module in MODULES}, {module: [] for module in MODULES})
    try:
        with tempfile.TemporaryDirectory() as cwd:
            for module in MODULES:
                _time_import(module, cwd)
            for run in range(runs):
                order = MODULES if run % 2 == 0 else tuple(reversed(MODULES))
                for module in order:
                    wall, cpu = _time_import(module, cwd)
                    result.seconds[module].append(wall)
                    result.cpu_seconds[module].append(cpu)
            result.added = _added_modules(cwd)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result
