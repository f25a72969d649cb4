"""What a run prints: instructions and wall-clock per operation, ratios, and the targets, in Markdown."""

from __future__ import annotations

import contextlib
import platform
import statistics
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from benchmarks.base import load
from benchmarks.count import ROOT
from benchmarks.settings import (
    BASELINES,
    CORE,
    OURS,
    TARGET_BULK,
    TARGET_IMPORT,
    TARGET_REPOSITORY,
    TARGET_UNIT,
    UNIT_WORKLOADS,
)


@dataclass(slots=True)
class Row:
    """One implementation of one workload on one backend."""

    backend: str
    workload: str
    implementation: str
    per_op: list[float] = field(default_factory=list)
    """Instructions per operation, one value per layout."""
    wall: float | None = None
    """Median wall-clock seconds per operation."""

    @property
    def instructions(self) -> float | None:
        return statistics.median(self.per_op) if self.per_op else None

    @property
    def spread(self) -> float | None:
        """(largest - smallest) / median of the layouts' counts."""
        median = self.instructions
        return (max(self.per_op) - min(self.per_op)) / median if median and len(self.per_op) > 1 else None


def rows(entries: Iterable[dict[str, Any]], walls: dict[str, float]) -> dict[tuple[str, str, str], Row]:
    """The probes' entries (and pyperf's medians, named ``backend workload implementation``) by row."""
    found: dict[tuple[str, str, str], Row] = {}
    native: dict[tuple[str, str, str], list[float]] = {}
    for entry in entries:
        if entry.get("error") or "seconds" not in entry:
            continue
        key = (entry["backend"], entry["workload"], entry["implementation"])
        row = found.setdefault(key, Row(*key))
        n = entry["n"]
        if entry["counted"]:
            first, second = entry["instructions"]
            row.per_op.append((second - first) / n)
        else:
            native.setdefault(key, []).append(sum(entry["seconds"]) / (3 * n))
    for key, row in found.items():
        row.wall = walls.get(" ".join(key)) or (statistics.median(native[key]) if key in native else None)
    return found


def baseline(workload: str, implementation: str) -> str:
    flavour = load(implementation).flavour
    return CORE[flavour] if workload == "W2" else BASELINES[flavour]


def ratio(found: dict[tuple[str, str, str], Row], row: Row, other: str, wall: bool = False) -> float | None:
    reference = found.get((row.backend, row.workload, other))
    if reference is None:
        return None
    ours, theirs = (row.wall, reference.wall) if wall else (row.instructions, reference.instructions)
    return ours / theirs if ours and theirs else None


def _num(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def _table(header: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])


def results_table(found: dict[tuple[str, str, str], Row]) -> str:
    header = ["backend", "workload", "implementation", "instructions/op", "x baseline", "spread"]
    header += ["wall µs/op", "wall x baseline"]
    body = []
    for row in found.values():
        base = baseline(row.workload, row.implementation)
        spread = None if row.spread is None else row.spread * 100
        body.append(
            [
                row.backend,
                row.workload,
                row.implementation,
                _num(row.instructions, ",.0f"),
                _num(ratio(found, row, base), ".3f"),
                _num(spread, ".1f") + ("%" if spread is not None else ""),
                _num(None if row.wall is None else row.wall * 1e6, ",.1f"),
                _num(ratio(found, row, base, wall=True), ".2f"),
            ]
        )
    return _table(header, body)


TARGETS: tuple[tuple[str, str, dict[str, str], float, bool], ...] = (
    *((f"{w} uow / plain ≤ {TARGET_UNIT}", w, BASELINES, TARGET_UNIT, False) for w in UNIT_WORKLOADS),
    *(
        (f"{w} uow / advanced-alchemy < 1", w, {"sync": "advanced-alchemy"}, 1.0, True)
        for w in UNIT_WORKLOADS
    ),
    (f"W2 insert_many / Core ≤ {TARGET_BULK}", "W2", CORE, TARGET_BULK, False),
    (f"W7 upsert_many / hand-written ≤ {TARGET_REPOSITORY}", "W7", BASELINES, TARGET_REPOSITORY, False),
    (f"W8 page / hand-written ≤ {TARGET_REPOSITORY}", "W8", BASELINES, TARGET_REPOSITORY, False),
)
"""Label, workload, what uow is compared with in each flavour, limit, whether the limit is excluded."""


def targets_table(found: dict[tuple[str, str, str], Row], imports: dict[str, list[int]]) -> str:
    """Each target's instruction ratio, per backend and flavour counted; a missed one is marked ✗."""
    counted = {(row.backend, load(row.implementation).flavour) for row in found.values() if row.per_op}
    columns = [
        (b, f) for b in dict.fromkeys(k[0] for k in found) for f in ("sync", "async") if (b, f) in counted
    ]

    def cell(
        backend: str, flavour: str, workload: str, others: dict[str, str], limit: float, strict: bool
    ) -> str:
        row = found.get((backend, workload, OURS[flavour]))
        if flavour not in others or row is None:
            return ""
        value = ratio(found, row, others[flavour])
        missed = value is not None and (value >= limit if strict else value > limit)
        return _num(value, ".3f") + (" ✗" if missed else "")

    body = [
        [label, *(cell(b, f, w, others, limit, strict) for b, f in columns)]
        for label, w, others, limit, strict in TARGETS
    ]
    body = [cells for cells in body if any(cell not in ("", "-") for cell in cells[1:])]
    if imports:
        value = statistics.median(imports["uow"]) / statistics.median(imports["sqlalchemy.orm"])
        mark = " ✗" if value > TARGET_IMPORT else ""
        body.append([f"import uow / import sqlalchemy.orm ≤ {TARGET_IMPORT}", f"{value:.3f}{mark}"])
        body[-1] += [""] * (len(columns) - 1)
    return _table(["target (instructions)", *(f"{b} {f}" for b, f in columns)], body) if body else ""


def imports_text(counts: dict[str, list[int]] | None, walls: dict[str, float] | None) -> str:
    parts = []
    if counts:
        medians = {m: statistics.median(v) for m, v in counts.items()}
        parts.append(
            "import instructions (median of layouts): "
            + ", ".join(f"{m} {v:,.0f}" for m, v in medians.items())
            + f"; ratio {medians['uow'] / medians['sqlalchemy.orm']:.3f}"
        )
    if walls:
        start = walls["python -c pass"]
        orm, ours = walls["import sqlalchemy.orm"] - start, walls["import uow"] - start
        parts.append(
            f"import wall-clock (pyperf medians, interpreter start of {start * 1e3:.1f} ms subtracted): "
            f"sqlalchemy.orm {orm * 1e3:.1f} ms, uow {ours * 1e3:.1f} ms; ratio {ours / orm:.3f}"
        )
    return "\n\n".join(parts)


def machine() -> str:
    """What the numbers were measured on, one line."""
    versions = []
    for package in ("SQLAlchemy", "advanced-alchemy", "psycopg", "asyncpg", "aiosqlite", "pyperf"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"uow {commit}; {python}; " + ", ".join(versions)
