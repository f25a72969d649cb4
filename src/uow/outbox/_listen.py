"""PostgreSQL LISTEN for the relay: a connection of its own that wakes the relay on each commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Listener", "listen"]

logger = logging.getLogger("uow.outbox")

# Options of SQLAlchemy's asyncpg adapter that asyncpg.connect() does not take.
_ADAPTER_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn")


class Listener:
    """A LISTEN connection; `wake` is set by every notification on its channel."""

    def __init__(self, wake: asyncio.Event) -> None:
        self.wake = wake
        self._close: Any = None
        self._closed: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        """Whether the connection still listens (a dropped one is replaced by the relay)."""
        if self._close is None or self._closed():
            return False
        return self._task is None or not self._task.done()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        close, self._close = self._close, None
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


async def listen(engine: Engine | AsyncEngine, channel: str, wake: asyncio.Event) -> Listener | None:
    """Listen on `channel` with the engine's driver, if it is psycopg 3 or asyncpg; else `None`.

    The listener connects with the engine's URL but outside its pool. A failure to connect is
    logged and gives `None`: the relay polls instead.
    """
    dialect = engine.dialect
    if dialect.name != "postgresql" or dialect.driver not in {"psycopg", "asyncpg"}:
        return None
    cargs, options = dialect.create_connect_args(engine.url)
    cparams = dict(options)
    listener = Listener(wake)
    try:
        if dialect.driver == "asyncpg":
            await _asyncpg(listener, channel, cargs, cparams)
        else:
            await _psycopg(listener, channel, cargs, cparams)
    except Exception:
        logger.warning("cannot LISTEN on %r; polling only", channel, exc_info=True)
        await listener.close()
        return None
    return listener


async def _asyncpg(listener: Listener, channel: str, cargs: Sequence[Any], cparams: dict[str, Any]) -> None:
    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

    for option in _ADAPTER_OPTIONS:
        cparams.pop(option, None)
    connection = await asyncpg.connect(*cargs, **cparams)
    listener._close = connection.close
    listener._closed = connection.is_closed
    await connection.add_listener(channel, lambda *_: listener.wake.set())


async def _psycopg(listener: Listener, channel: str, cargs: Sequence[Any], cparams: dict[str, Any]) -> None:
    import psycopg
    from psycopg import sql

    cparams.pop("context", None)
    connection = await psycopg.AsyncConnection.connect(*cargs, autocommit=True, **cparams)
    listener._close = connection.close
    listener._closed = lambda: connection.closed
    await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    async def receive() -> None:
        async for _ in connection.notifies():
            listener.wake.set()

    listener._task = asyncio.create_task(receive(), name=f"uow.outbox LISTEN {channel}")
