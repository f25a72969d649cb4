"""The implementations a contract specification runs against, behind one synchronous face.

A *world* is the in-memory unit on its store, or the real unit on one backend; each in the sync or
the async flavour. Async units run every call as a task on one long-lived event loop, as in
``tests/drivers.py``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from tests.conftest import Backend
from tests.drivers import Flavour, RepositoryDriver
from tests.models import Account, User
from uow.testing import AsyncInMemoryUnitOfWork, InMemoryStore, InMemoryUnitOfWork


class Driver:
    """A unit of any kind and flavour, used with ``with`` and plain calls."""

    def __init__(self, unit: Any, runner: asyncio.Runner | None) -> None:
        self.real = unit
        self._runner = runner

    def _call(self, result: Any) -> Any:
        if self._runner is not None and inspect.isawaitable(result):
            return self._runner.run(result)
        return result

    def __enter__(self) -> Driver:
        if self._runner is not None:
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
        if self._runner is not None:
            self._call(self.real.__aexit__(exc_type, exc, traceback))
        else:
            self.real.__exit__(exc_type, exc, traceback)

    def commit(self) -> None:
        self._call(self.real.commit())

    def rollback(self) -> None:
        self._call(self.real.rollback())

    def repository(self, target: Any) -> RepositoryDriver:
        return RepositoryDriver(self.real.repository(target), self._runner)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        manager = self.real.savepoint()
        if self._runner is None:
            with manager:
                yield
            return
        self._runner.run(manager.__aenter__())
        try:
            yield
        except BaseException as exc:
            if not self._runner.run(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self._runner.run(manager.__aexit__(None, None, None))

    def on_commit(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        self.real.on_commit(fn, robust=robust)

    def on_rollback(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        self.real.on_rollback(fn, robust=robust)

    @property
    def active(self) -> bool:
        return bool(self.real.active)


class World:
    """Units of one implementation and flavour, and a way around them to seed and check the data."""

    def __init__(
        self,
        name: str,
        runner: asyncio.Runner | None,
        *,
        store: InMemoryStore | None = None,
        backend: Backend | None = None,
        flavour: Flavour | None = None,
    ) -> None:
        self.name = name
        self.runner = runner
        self.store = store
        self.backend = backend
        self.flavour = flavour

    @property
    def is_async(self) -> bool:
        return self.runner is not None

    @property
    def in_memory(self) -> bool:
        return self.store is not None

    def unit(self, **options: Any) -> Driver:
        """A unit of this world; ``options`` (``dispatch``, ``read_only``, ``durable``) go to it."""
        if self.flavour is not None:
            factory: Callable[[], Any] = self.flavour.session_factory
            cls: Any = type(self.flavour.unit().real)
            return Driver(cls(factory, **options), self.runner)
        cls = AsyncInMemoryUnitOfWork if self.is_async else InMemoryUnitOfWork
        return Driver(cls(self.store, **options), self.runner)

    def insert(self, *objects: object) -> None:
        """Commit ``objects`` outside any unit under test."""
        if self.store is not None:
            self.store.insert(*objects)
        else:
            assert self.backend is not None
            self.backend.insert(*objects)

    def users(self) -> list[tuple[str, str | None]]:
        """The committed users, read around the units under test."""
        if self.store is not None:
            return [(user.id, user.name) for user in self.store.all(User)]
        assert self.backend is not None
        return self.backend.users()

    def accounts(self) -> list[tuple[int, str, int]]:
        if self.store is not None:
            return [(a.id, a.owner, a.balance) for a in self.store.all(Account)]
        assert self.backend is not None
        return self.backend.accounts()

    def checked_out(self) -> int:
        return self.flavour.checked_out() if self.flavour is not None else 0
