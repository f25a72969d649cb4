"""Engines and table management for one backend, in the sync and the async flavour.

Every implementation of a flavour shares the flavour's engine (and so its pool) but makes its own
session factory, so that the event listeners one library registers on its sessions never slow down
another's. Tables are emptied with ``TRUNCATE`` on PostgreSQL (keeping the table, so that asyncpg's
prepared statements stay valid) and ``DELETE`` on SQLite.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from benchmarks.models import METADATAS, TABLES, seed_rows
from benchmarks.settings import Backend


def _empty(connection: Connection, key: str) -> None:
    table = TABLES[key]
    if connection.dialect.name == "postgresql":
        connection.execute(text(f'TRUNCATE TABLE "{table.name}" RESTART IDENTITY'))
    else:
        connection.execute(table.delete())


def _create(connection: Connection) -> None:
    for metadata in METADATAS:
        metadata.drop_all(connection)
        metadata.create_all(connection)


class SyncEnv:
    """The sync engine of a backend, and the raw DBAPI connection of the raw-driver implementation."""

    flavour = "sync"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.engine: Engine = create_engine(backend.sync_url)
        self.dialect = self.engine.dialect.name
        self._held: Any = None

    def create(self) -> None:
        """Drop and create every benchmark table."""
        with self.engine.begin() as connection:
            _create(connection)

    def reset(self, key: str) -> None:
        with self.engine.begin() as connection:
            _empty(connection, key)

    def seed(self, key: str, rows: int) -> None:
        with self.engine.begin() as connection:
            _empty(connection, key)
            connection.execute(insert(TABLES[key]), seed_rows(rows))

    def count(self, key: str) -> int:
        with self.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(TABLES[key])) or 0)

    def raw_connection(self) -> Any:
        """A DBAPI connection of the backend's driver, outside SQLAlchemy's pool where it can be.

        In-memory SQLite exists only inside one connection, so there the raw driver gets the very
        ``sqlite3`` connection that the engine's pool holds.
        """
        if self.backend.name == "sqlite-memory":
            self._held = self.engine.raw_connection()
            return self._held.driver_connection
        if self.backend.file is not None:
            return sqlite3.connect(self.backend.file)
        import psycopg

        url = self.engine.url.set(drivername="postgresql")
        return psycopg.connect(url.render_as_string(hide_password=False))

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
        self.engine.dispose()


async def _create_async(connection: AsyncConnection) -> None:
    await connection.run_sync(_create)


class AsyncEnv:
    """The async engine of a backend (aiosqlite, asyncpg)."""

    flavour = "async"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.engine: AsyncEngine = create_async_engine(backend.async_url)
        self.dialect = self.engine.dialect.name

    async def create(self) -> None:
        """Create the tables where the sync engine cannot see them (in-memory SQLite)."""
        if not self.backend.shared:
            async with self.engine.begin() as connection:
                await _create_async(connection)

    async def reset(self, key: str) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(_empty, key)

    async def seed(self, key: str, rows: int) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(_empty, key)
            await connection.execute(insert(TABLES[key]), seed_rows(rows))

    async def count(self, key: str) -> int:
        async with self.engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(TABLES[key])) or 0)

    async def close(self) -> None:
        await self.engine.dispose()
