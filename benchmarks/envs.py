"""The database of one process, and the engine and tables an implementation runs on.

Every process gets a database of its own, so that processes may run side by side: a temporary
SQLite file, or on PostgreSQL a schema named for the process that every connection's
``search_path`` points to (no per-statement cost, unlike a ``schema_translate_map``). Tables are
emptied with ``TRUNCATE`` on PostgreSQL (which keeps asyncpg's prepared statements valid) and with
``DELETE`` on SQLite.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.models import TABLES, Base, seed_rows
from benchmarks.settings import Backend, make_backend


@contextmanager
def private_backend(name: str) -> Iterator[Backend]:
    """The backend called ``name``, for this process alone while the block runs."""
    with tempfile.TemporaryDirectory(prefix="uow-bench-") as workdir:
        schema = f"uow_bench_{os.getpid()}"
        backend = make_backend(name, Path(workdir), schema)
        if name != "postgresql":
            yield backend
            return
        admin = create_engine(backend.sync_url)
        drop = text(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        try:
            with admin.begin() as connection:
                connection.execute(drop)
                connection.execute(text(f"CREATE SCHEMA {schema}"))
            yield backend
        finally:
            with admin.begin() as connection:
                connection.execute(drop)
            admin.dispose()


def create_tables(connection: Connection) -> None:
    Base.metadata.drop_all(connection)
    Base.metadata.create_all(connection)


def empty(connection: Connection, key: str) -> None:
    table = TABLES[key]
    if connection.dialect.name == "postgresql":
        connection.execute(text(f'TRUNCATE TABLE "{table.name}" RESTART IDENTITY'))
    else:
        connection.execute(table.delete())


def seed(connection: Connection, key: str, rows: int) -> None:
    empty(connection, key)
    connection.execute(insert(TABLES[key]), seed_rows(rows))


def count_rows(connection: Connection, key: str) -> int:
    return int(connection.scalar(select(func.count()).select_from(TABLES[key])) or 0)


class SyncEnv:
    """A sync engine on the backend, and the raw DBAPI connection of the raw-driver implementation."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.engine = create_engine(backend.sync_url, connect_args=backend.sync_args)
        self.dialect = self.engine.dialect.name
        self._held: Any = None

    def do(self, work: Any, *args: Any) -> Any:
        """``work(connection, *args)`` in a transaction of its own."""
        with self.engine.begin() as connection:
            return work(connection, *args)

    def raw_connection(self) -> Any:
        """A DBAPI connection of the backend's driver; on in-memory SQLite, the engine's own."""
        if self.backend.name == "sqlite-memory":  # that database lives in the pool's one connection
            self._held = self.engine.raw_connection()
            return self._held.driver_connection
        if self.dialect == "sqlite":
            return sqlite3.connect(str(self.engine.url.database))
        import psycopg

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return psycopg.connect(url, **self.backend.sync_args)

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
        self.engine.dispose()


class AsyncEnv:
    """An async engine on the backend (aiosqlite, asyncpg)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.engine = create_async_engine(backend.async_url, connect_args=backend.async_args)
        self.dialect = self.engine.dialect.name

    async def do(self, work: Any, *args: Any) -> Any:
        async with self.engine.begin() as connection:
            return await connection.run_sync(work, *args)

    async def close(self) -> None:
        await self.engine.dispose()
