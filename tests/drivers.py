"""One face for both flavours, so that each specification is written once and run for both.

The sync flavour drives :class:`uow.UnitOfWork` directly. The async flavour drives
:class:`uow.AsyncUnitOfWork` on one long-lived event loop: every call runs as a task of its own on that
loop, so the async unit really does its I/O with the async driver.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool

from uow import AsyncUnitOfWork, UnitOfWork


async def _collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


@contextmanager
def block(runner: asyncio.Runner | None, manager: Any) -> Iterator[Any]:
    """``with`` over a context manager, or over an async one run on ``runner``'s loop."""
    if runner is None:
        with manager as value:
            yield value
        return
    value = runner.run(manager.__aenter__())
    try:
        yield value
    except BaseException as exc:
        if not runner.run(manager.__aexit__(type(exc), exc, exc.__traceback__)):
            raise
    else:
        runner.run(manager.__aexit__(None, None, None))


class RepositoryDriver:
    """A repository whose coroutine methods are run to completion on the flavour's loop."""

    def __init__(self, repository: Any, runner: asyncio.Runner | None) -> None:
        self.real = repository
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.real, name)
        if self._runner is None or not inspect.iscoroutinefunction(attribute):
            return attribute
        runner = self._runner

        def run(*args: Any, **kwargs: Any) -> Any:
            result = runner.run(attribute(*args, **kwargs))
            if hasattr(result, "__anext__"):  # a stream: read it to the end on the loop
                return runner.run(_collect(result))
            return result

        return run


class UnitDriver:
    """A unit of either flavour, used with ``with`` and plain calls."""

    def __init__(self, unit: UnitOfWork | AsyncUnitOfWork, runner: asyncio.Runner | None) -> None:
        self.real = unit
        self._runner = runner

    def _call(self, result: Any) -> Any:
        if self._runner is not None and inspect.isawaitable(result):
            return self._runner.run(result)
        return result

    def __enter__(self) -> UnitDriver:
        if isinstance(self.real, AsyncUnitOfWork):
            self._call(self.real.__aenter__())
        else:
            self.real.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(self.real, AsyncUnitOfWork):
            self._call(self.real.__aexit__(exc_type, exc, traceback))
        else:
            self.real.__exit__(exc_type, exc, traceback)

    def commit(self) -> None:
        self._call(self.real.commit())

    def rollback(self) -> None:
        self._call(self.real.rollback())

    def repository(self, target: Any) -> RepositoryDriver:
        return RepositoryDriver(self.real.repository(target), self._runner)

    @property
    def session(self) -> Any:
        return self.real.session

    @property
    def active(self) -> bool:
        return self.real.active

    def execute(self, statement: Any, *args: Any) -> Any:
        """Run a raw statement through the unit's live session (the escape hatch)."""
        return self._call(self.real.session.execute(statement, *args))

    def flush(self) -> None:
        self._call(self.real.session.flush())

    def savepoint(self) -> AbstractContextManager[None]:
        return block(self._runner, self.real.savepoint())

    def on_commit(self, fn: Callable[[], Any], *, robust: bool = False) -> None:
        self.real.on_commit(fn, robust=robust)

    def on_rollback(self, fn: Callable[[], Any], *, robust: bool = False) -> None:
        self.real.on_rollback(fn, robust=robust)


class Flavour:
    """Makes units of one flavour against one backend's engine."""

    def __init__(self, name: str, engine: Engine | AsyncEngine, runner: asyncio.Runner | None) -> None:
        self.name = name
        self.engine = engine
        self.runner = runner
        if isinstance(engine, AsyncEngine):
            self.session_factory: Callable[[], Any] = async_sessionmaker(engine)
        else:
            self.session_factory = sessionmaker(engine)

    @property
    def is_async(self) -> bool:
        return self.runner is not None

    def unit(self, factory: Callable[[], Any] | None = None, **options: Any) -> UnitDriver:
        factory = factory or self.session_factory
        unit = AsyncUnitOfWork(factory, **options) if self.is_async else UnitOfWork(factory, **options)
        return UnitDriver(unit, self.runner)

    def hook(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn`` as this flavour's users would write a hook: a coroutine function when async."""
        if not self.is_async:
            return fn

        async def hook() -> Any:
            await asyncio.sleep(0)
            return fn()

        return hook

    def run(self, awaitable_or_value: Any) -> Any:
        if self.runner is not None and inspect.isawaitable(awaitable_or_value):
            return self.runner.run(awaitable_or_value)
        return awaitable_or_value

    def checked_out(self) -> int:
        """How many connections of this flavour's pool are checked out right now."""
        pool = self.engine.pool
        if isinstance(pool, NullPool):  # closes every connection as it is returned
            return 0
        return pool.checkedout()  # type: ignore[attr-defined, no-any-return]


def in_threads(count: int, target: Callable[[int], None]) -> None:
    """Run `target(0)` ... `target(count - 1)` in threads of their own; none may hang or raise."""
    errors: list[BaseException] = []

    def guarded(number: int) -> None:
        try:
            target(number)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    assert errors == []
