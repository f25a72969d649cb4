"""What is measured: the backends, the workloads, their sizes and the targets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

DEFAULT_POSTGRESQL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/uow_bench"
BACKEND_NAMES = ("sqlite-memory", "sqlite-file", "postgresql")
WORKLOADS = {
    "W1": "units that insert one row and commit",
    "W2": "rows inserted in one unit (per row)",
    "W3": "primary-key reads, each in its own unit",
    "W4": "units that insert one row, flush and roll back",
    "W5": "filtered, ordered, paged list queries, each in its own unit",
    "W6": "reference scenarios (rollback, commit, read back), each in its own unit",
    "W7": "upserts of 100 rows (50 existing, 50 new), each in its own unit",
    "W8": "keyset pages of 20 rows, each in its own unit, continuing after the previous page",
}
UNIT_WORKLOADS = ("W1", "W3", "W4", "W5", "W6")

COUNT_SIZES = {
    "full": {"W1": 50, "W2": 500, "W3": 50, "W4": 50, "W5": 30, "W6": 20, "W7": 20, "W8": 30},
    "quick": {"W1": 10, "W2": 100, "W3": 10, "W4": 10, "W5": 10, "W6": 5, "W7": 5, "W8": 10},
}
"""N of the N-against-2N difference: operations (W2: rows) per measured run."""
SEED_ROWS = {"full": 10_000, "quick": 1_000}
"""Rows in the tables that W3, W5 and W8 read."""
PAGE_SIZE = 20
UPSERT_ROWS = 100
"""Rows per W7 upsert: the last half of the previous upsert's (or the seeded ones), and as many new."""
CATEGORIES = 10

BASELINES = {"sync": "orm", "async": "orm-async"}
"""Plain SQLAlchemy, the baseline of W1 and W3 to W6 for each flavour."""
CORE = {"sync": "core", "async": "core-async"}
"""SQLAlchemy Core's executemany, the baseline of W2."""
OURS = {"sync": "uow", "async": "uow-async"}
TARGET_UNIT = 1.02
"""uow against plain SQLAlchemy on W1, W3, W4, W5 and W6, in instructions per operation."""
TARGET_BULK = 1.2
"""``insert_many`` against Core ``executemany`` on W2."""
TARGET_REPOSITORY = 1.05
"""``upsert_many`` (W7) and ``page`` (W8) against the same statements written by hand, per operation."""
TARGET_IMPORT = 1.05
"""``import uow`` against ``import sqlalchemy.orm``."""


@dataclass(frozen=True, slots=True)
class Backend:
    """A database to run on: the URLs of its sync and async drivers and what their engines need."""

    name: str
    sync_url: str
    async_url: str
    sync_args: dict[str, Any]
    async_args: dict[str, Any]


def postgresql_url(option: str | None = None) -> str:
    return option or os.environ.get("UOW_BENCH_POSTGRESQL_URL") or DEFAULT_POSTGRESQL_URL


def make_backend(name: str, workdir: Path, schema: str) -> Backend:
    """The backend called ``name``, private to this process: a SQLite file in ``workdir``, or on
    PostgreSQL the ``schema`` that every connection's ``search_path`` points to."""
    if name == "sqlite-memory":
        return Backend(name, "sqlite://", "sqlite+aiosqlite://", {}, {})
    if name == "sqlite-file":
        path = workdir / "bench.sqlite"
        return Backend(name, f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}", {}, {})
    if name == "postgresql":
        url = make_url(postgresql_url())
        if url.get_backend_name() != "postgresql":
            raise ValueError(f"the PostgreSQL URL must name a postgresql database, got {url!r}")
        sync_url = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        async_url = url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        sync_args = {"options": f"-csearch_path={schema}"}
        async_args = {"server_settings": {"search_path": schema}}
        return Backend(name, sync_url, async_url, sync_args, async_args)
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")
