"""What is measured: the backends, the workloads and their sizes, per mode."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

DEFAULT_POSTGRESQL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/uow_bench"
POSTGRESQL_URL_VARIABLE = "UOW_BENCH_POSTGRESQL_URL"


@dataclass(frozen=True, slots=True)
class Workload:
    """One of the issue's workloads."""

    key: str
    title: str
    per: str
    """What one operation is, for the per-operation time: a unit, a row, a read, a query, a scenario."""
    issue_size: int
    """The size the issue asks for."""
    writes: bool
    """Whether the workload writes, so that its table is emptied before every timed run."""


WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload("W1", "units that insert one row and commit", "unit", 5_000, writes=True),
        Workload("W2", "rows inserted in one unit", "row", 100_000, writes=True),
        Workload("W3", "primary-key reads, each in its own unit", "read", 20_000, writes=False),
        Workload("W4", "units that insert one row and roll back", "unit", 5_000, writes=True),
        Workload("W5", "filtered, ordered, paged list queries", "query", 2_000, writes=False),
        Workload("W6", "reference scenarios (rollback, commit, read)", "scenario", 20_000, writes=True),
    )
}

# The issue's sizes take about 2 hours for every implementation on every backend on this 2-core
# machine (5 repetitions); the full run keeps the issue's size where a backend is quick enough and
# scales the rest so that every measurement lasts about a second or more. --issue-sizes runs them all.
FULL_SIZES: dict[str, dict[str, int]] = {
    "sqlite-memory": {"W1": 2_000, "W2": 100_000, "W3": 2_000, "W4": 1_500, "W5": 1_000, "W6": 800},
    "sqlite-file": {"W1": 500, "W2": 100_000, "W3": 2_000, "W4": 1_000, "W5": 600, "W6": 200},
    "postgresql": {"W1": 400, "W2": 100_000, "W3": 800, "W4": 600, "W5": 500, "W6": 300},
}
QUICK_SIZES: dict[str, int] = {"W1": 20, "W2": 1_000, "W3": 50, "W4": 20, "W5": 20, "W6": 15}

SEED_ROWS = {"full": 10_000, "quick": 1_000}
"""Rows in the tables that W3 and W5 read."""
PAGE_SIZE = 20
CATEGORIES = 10

STREAM_ROWS = {"full": 1_000_000, "quick": 50_000}
STREAM_BATCH = 1_000
STREAM_BACKENDS = {"full": ("sqlite-file", "postgresql"), "quick": ("sqlite-file",)}
STREAM_LIMIT_MB = 50.0

IMPORT_RUNS = {"full": 21, "quick": 5}
TAX_PROCESSES = {"full": 3, "quick": 1}
TAX_REPS = {"full": 3, "quick": 1}
TAX_SCALE = {"full": 0.5, "quick": 1.0}
"""The clean-process measurement runs in-memory SQLite at this fraction of the main run's sizes."""
REPETITIONS = {"full": 5, "quick": 5}

TARGET_RATIO = 1.05
"""uow against plain SQLAlchemy on W1, W3, W4, W5 and W6."""
TARGET_BULK_RATIO = 1.5
"""uow's insert_many against Core executemany on W2."""
TARGET_IMPORT_RATIO = 1.10
"""``import uow`` against ``import sqlalchemy.orm``."""
RATIO_WORKLOADS = ("W1", "W3", "W4", "W5", "W6")


@dataclass(frozen=True, slots=True)
class Backend:
    """A database to run on, with the URLs of its sync and async drivers."""

    name: str
    sync_url: str
    async_url: str
    shared: bool
    """Whether the sync and async engines see the same database (not so for in-memory SQLite)."""
    file: Path | None = None


BACKEND_NAMES = ("sqlite-memory", "sqlite-file", "postgresql")


def postgresql_url(option: str | None) -> str:
    return option or os.environ.get(POSTGRESQL_URL_VARIABLE) or DEFAULT_POSTGRESQL_URL


def make_backend(name: str, workdir: Path, pg_url: str) -> Backend:
    """The backend called ``name``; SQLite files go to ``workdir``."""
    if name == "sqlite-memory":
        return Backend(name, "sqlite://", "sqlite+aiosqlite://", shared=False)
    if name == "sqlite-file":
        path = workdir / "bench.sqlite"
        return Backend(name, f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}", shared=True, file=path)
    if name == "postgresql":
        url = make_url(pg_url)
        if url.get_backend_name() != "postgresql":
            raise ValueError(f"the PostgreSQL URL must name a postgresql database, got {pg_url!r}")
        sync_url = url.set(drivername="postgresql+psycopg")
        async_url = url.set(drivername="postgresql+asyncpg")
        return Backend(
            name,
            sync_url.render_as_string(hide_password=False),
            async_url.render_as_string(hide_password=False),
            shared=True,
        )
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")


def sizes_for(backend: str, mode: str, issue_sizes: bool) -> dict[str, int]:
    """The size of every workload on ``backend`` in ``mode`` ('full' or 'quick')."""
    if mode == "quick":
        return dict(QUICK_SIZES)
    if issue_sizes:
        return {key: w.issue_size for key, w in WORKLOADS.items()}
    return dict(FULL_SIZES[backend])
