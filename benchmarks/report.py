"""What a run reports: the machine, the table of medians and ratios, the targets, and JSON."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import uow
from benchmarks.base import BASELINES, CORE
from benchmarks.importtime import ImportResult
from benchmarks.runner import Measurement
from benchmarks.settings import (
    RATIO_WORKLOADS,
    STREAM_LIMIT_MB,
    TARGET_BULK_RATIO,
    TARGET_IMPORT_RATIO,
    TARGET_RATIO,
    WORKLOADS,
)
from benchmarks.stream import StreamResult
from benchmarks.tax import TaxResult

PACKAGES = ("SQLAlchemy", "uow", "psycopg", "asyncpg", "aiosqlite", "greenlet", "advanced-alchemy")


def machine(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What the numbers were measured on."""
    info = {
        "cpus (nproc)": str(len(os.sched_getaffinity(0))),
        "cpu model": _cpu_model(),
        "memory": _memory(),
        "load average at start": " ".join(f"{load:.2f}" for load in os.getloadavg()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "sqlite library": sqlite3.sqlite_version,
    }
    for package in PACKAGES:
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    info["uow commit"] = _commit()
    info["uow imported from"] = str(Path(uow.__file__).resolve().parent)
    info.update(extra or {})
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        completed = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return completed.stdout.strip() + (" (src/ modified)" if dirty.stdout.strip() else "")


# -- ratios ------------------------------------------------------------------------------------------


def _find(measurements: Iterable[Measurement], backend: str, workload: str, name: str) -> Measurement | None:
    for m in measurements:
        if m.backend == backend and m.workload == workload and m.implementation == name:
            return m
    return None


def ratio_to(
    measurements: Sequence[Measurement], m: Measurement, other: str, cpu: bool = False
) -> float | None:
    """The median time per operation of ``m`` over that of ``other`` (the same when sizes are equal).

    Wall-clock time by default; with ``cpu``, the CPU time of the benchmark's process.
    """
    reference = _find(measurements, m.backend, m.workload, other)
    if reference is None:
        return None
    ours, theirs = (m.cpu_median, reference.cpu_median) if cpu else (m.median, reference.median)
    if not ours or not theirs:
        return None
    return (ours / m.size) / (theirs / reference.size)


def rows(measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """One row per measurement, with its median, time per operation and ratios."""
    result = []
    for m in measurements:
        median = m.median
        baseline, core = BASELINES[m.flavour], CORE[m.flavour]
        result.append(
            {
                "backend": m.backend,
                "workload": m.workload,
                "implementation": m.implementation,
                "flavour": m.flavour,
                "size": m.size,
                "times_s": [round(t, 6) for t in m.times],
                "cpu_times_s": [round(t, 6) for t in m.cpu_times],
                "median_s": median,
                "cpu_median_s": m.cpu_median,
                "per_op_us": median / m.size * 1e6 if median is not None else None,
                "ratio_orm": ratio_to(measurements, m, baseline),
                "ratio_orm_cpu": ratio_to(measurements, m, baseline, cpu=True),
                "ratio_core": ratio_to(measurements, m, core),
                "ratio_core_cpu": ratio_to(measurements, m, core, cpu=True),
                "spread": m.spread,
                "error": m.error,
            }
        )
    return result


# -- targets ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    what: str
    value: float | None
    limit: float
    unit: str
    cpu_value: float | None = None
    """The same ratio in CPU time of the benchmark's process, where there is one."""

    @property
    def status(self) -> str:
        if self.value is None:
            return "not measured"
        return "met" if self.value <= self.limit else "MISSED"


def _ratio_target(
    measurements: Sequence[Measurement], m: Measurement, other: str, what: str, limit: float
) -> Target:
    value = ratio_to(measurements, m, other)
    return Target(what, value, limit, "x", ratio_to(measurements, m, other, cpu=True))


def targets(
    measurements: Sequence[Measurement], imports: ImportResult | None, streams: Sequence[StreamResult]
) -> list[Target]:
    """Every target of the issue that this run measured, with the measured value."""
    found: list[Target] = []
    for backend in dict.fromkeys(m.backend for m in measurements):
        for flavour, ours in (("sync", "uow"), ("async", "uow-async")):
            baseline, core = BASELINES[flavour], CORE[flavour]
            for workload in RATIO_WORKLOADS:
                m = _find(measurements, backend, workload, ours)
                if m is not None:
                    what = f"{backend} {workload} {ours} / {baseline}"
                    found.append(_ratio_target(measurements, m, baseline, what, TARGET_RATIO))
            m = _find(measurements, backend, "W2", ours)
            if m is not None:
                what = f"{backend} W2 {ours} insert_many / {core}"
                found.append(_ratio_target(measurements, m, core, what, TARGET_BULK_RATIO))
    if imports is not None:
        found.append(
            Target(
                "import uow / import sqlalchemy.orm",
                imports.ratio,
                TARGET_IMPORT_RATIO,
                "x",
                imports.cpu_ratio,
            )
        )
    for stream in streams:
        growth = None if stream.error else stream.growth_mb
        what = f"{stream.backend} stream {stream.rows:,} rows: peak memory growth"
        found.append(Target(what, growth, STREAM_LIMIT_MB, "MB"))
    return found


# -- text -------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def _table(header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *body, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < 3 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in body)])


def results_table(measurements: Sequence[Measurement], markdown: bool = False) -> str:
    header = ["backend", "workload", "implementation", "size", "median s", "µs/op", "x ORM", "x ORM cpu"]
    header += ["x Core", "spread"]
    body = []
    for row in rows(measurements):
        if row["error"] is not None:
            cells = ["FAILED: " + row["error"]] + [""] * 6
        else:
            cells = [
                f"{row['size']:,}",
                _num(row["median_s"], 3),
                _num(row["per_op_us"], 1),
                _num(row["ratio_orm"]),
                _num(row["ratio_orm_cpu"]),
                _num(row["ratio_core"]),
                _num(None if row["spread"] is None else row["spread"] * 100, 0, "%"),
            ]
        body.append([row["backend"], row["workload"], row["implementation"], *cells])
    return _table(header, body, markdown)


def targets_table(found: Sequence[Target], markdown: bool = False) -> str:
    body = [
        [
            t.what,
            _num(t.value, 3 if t.unit == "x" else 1, " " + t.unit),
            _num(t.cpu_value, 3, " x") if t.cpu_value is not None else "",
            f"<= {t.limit:g} {t.unit}",
            t.status,
        ]
        for t in found
    ]
    return _table(["target", "measured", "in cpu time", "limit", "status"], body, markdown)


def extras_text(imports: ImportResult | None, streams: Sequence[StreamResult], markdown: bool = False) -> str:
    parts = []
    if imports is not None:
        if imports.error:
            parts.append(f"import time: FAILED: {imports.error}")
        else:
            medians = ", ".join(
                f"import {module}: {_num(imports.median(module), 4)} s" for module in imports.seconds
            )
            added = ", ".join(f"{name} {own / 1000:.1f} ms" for name, own, _ in imports.added[:6])
            ratio, cpu, best = _num(imports.ratio, 3), _num(imports.cpu_ratio, 3), _num(imports.best_ratio, 3)
            parts.append(
                f"import time (median of {imports.runs} fresh processes): {medians}; ratio {ratio} "
                f"(in CPU time: {cpu}; fastest run against fastest run: {best})"
            )
            parts.append(f"modules import uow adds, by own time (one -X importtime run): {added}")
    if streams:
        body = [
            [
                s.backend,
                f"{s.rows:,}",
                f"{s.batch_size:,}",
                "FAILED: " + s.error if s.error else f"{s.rows_read:,}",
                _num(s.seconds, 1),
                _num(s.baseline_mb, 1),
                _num(s.peak_mb, 1),
                _num(s.growth_mb, 1),
                f"{s.control_rows:,}",
                _num(s.control_growth_mb, 1),
            ]
            for s in streams
        ]
        header = ["stream", "rows", "batch", "read", "seconds", "baseline MB", "peak MB", "growth MB"]
        header += ["control: rows kept by list()", "control growth MB"]
        parts.append(_table(header, body, markdown))
    return "\n\n".join(parts)


def workloads_legend(sizes: dict[str, dict[str, int]]) -> str:
    lines = []
    for key, w in WORKLOADS.items():
        measured = ", ".join(f"{backend} {size[key]:,}" for backend, size in sizes.items() if key in size)
        lines.append(f"{key}: {w.title} (issue: {w.issue_size:,}; here: {measured}); µs/op is per {w.per}")
    return "\n".join(lines)


def tax_table(taxes: TaxResult, markdown: bool = False) -> str:
    """Plain sessions in processes with and without uow, and Python calls per operation."""
    header = ["workload (sqlite-memory)", "tax wall", "tax cpu", "plain calls", "plain calls, uow used"]
    header += ["uow calls", "uow / plain calls"]
    body = [
        [
            f"{row['workload']} (n={taxes.sizes[row['workload']]:,})",
            _num(row["tax_wall"], 3, " x"),
            _num(row["tax_cpu"], 3, " x"),
            _num(row["plain_calls_clean"], 0),
            _num(row["plain_calls_taxed"], 0),
            _num(row["uow_calls"], 0),
            _num(row["uow_calls_ratio"], 3, " x"),
        ]
        for row in taxes.summary()
    ]
    title = (
        f"plain ORM in fresh processes ({taxes.processes} with uow never used, {taxes.processes} after one "
        "uow unit); tax = slowdown of plain sessions once uow has run; calls = Python function calls "
        "per operation (cProfile, noise-free)"
    )
    return title + "\n\n" + _table(header, body, markdown)
