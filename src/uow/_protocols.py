"""The interfaces that application code can depend on: satisfied by the real units and by the fakes.

Annotate with these instead of the concrete classes, and the same code runs on a
[`UnitOfWork`][uow.UnitOfWork] in production and on a [`InMemoryUnitOfWork`][uow.testing.InMemoryUnitOfWork]
in unit
tests; `mypy --strict` checks that both conform:

```python
def register(unit: UnitOfWorkProtocol, user_id: str, name: str) -> None:
    with unit:
        unit.repository(User).add(User(id=user_id, name=name))
        unit.commit()
```

The interfaces cover the block, `commit()`, `rollback()`, `savepoint()`, the `on_commit` and
`on_rollback` hooks and `repository()`. The unit's `session` is deliberately not part of them:
code that needs the session needs a real database.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar, overload

from sqlalchemy import ColumnElement

from uow._async_repository import AsyncRepository
from uow._filters import ParsedQuery
from uow._locks import ForUpdate, LoadOptions
from uow._pages import Page
from uow._repository import OrderBy, Repository

__all__ = [
    "AsyncRepositoryProtocol",
    "AsyncUnitOfWorkProtocol",
    "RepositoryProtocol",
    "UnitOfWorkProtocol",
]

T = TypeVar("T")
R = TypeVar("R", bound=Repository[Any])
AR = TypeVar("AR", bound=AsyncRepository[Any])


class RepositoryProtocol(Protocol[T]):
    """The reads and writes of one mapped class: what [`Repository`][uow.Repository] offers.

    Satisfied by [`Repository`][uow.Repository] and [`InMemoryRepository`][uow.testing.InMemoryRepository].
    The methods
    keep the meaning documented on [`Repository`][uow.Repository].
    """

    @property
    def model(self) -> type[T]:
        """The mapped class this repository reads and writes."""
        ...

    def add(self, obj: T) -> T: ...
    def add_all(self, objs: Iterable[T]) -> builtins.list[T]: ...
    def remove(self, obj: T) -> None: ...
    def insert_many(self, rows: Iterable[Mapping[str, Any]]) -> int: ...
    def upsert(
        self,
        obj_or_mapping: T | Mapping[str, Any],
        *,
        on: str | Sequence[str] | None = None,
        update: Sequence[str] | Mapping[str, Any] | None = None,
    ) -> T: ...
    def upsert_many(
        self,
        rows: Iterable[T | Mapping[str, Any]],
        *,
        on: str | Sequence[str] | None = None,
        update: Sequence[str] | Mapping[str, Any] | None = None,
    ) -> builtins.list[T]: ...
    def get_or_create(self, defaults: Mapping[str, Any] | None = None, **keys: Any) -> tuple[T, bool]: ...
    def update_where(self, values: Mapping[str, Any], *where: ColumnElement[bool], **equals: Any) -> int: ...
    def delete_where(self, *where: ColumnElement[bool], **equals: Any) -> int: ...
    def stream(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        batch_size: int = 1000,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> Iterator[T]: ...
    def get(self, ident: Any, *, for_update: ForUpdate = False, options: LoadOptions = ()) -> T | None: ...
    def get_one(self, ident: Any, *, for_update: ForUpdate = False, options: LoadOptions = ()) -> T: ...
    def list(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> builtins.list[T]: ...
    def first(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T | None: ...
    def one(
        self,
        *where: ColumnElement[bool],
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T: ...
    def get_one_or_none(
        self,
        *where: ColumnElement[bool],
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T | None: ...
    def count(self, *where: ColumnElement[bool], **equals: Any) -> int: ...
    def exists(self, *where: ColumnElement[bool], **equals: Any) -> bool: ...
    def list_and_count(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        options: LoadOptions = (),
        **equals: Any,
    ) -> tuple[builtins.list[T], int]: ...
    def page(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int = 50,
        after: str | None = None,
        before: str | None = None,
        options: LoadOptions = (),
        **equals: Any,
    ) -> Page[T]: ...
    def parse_query(self, params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> ParsedQuery: ...
    def parse_filters(
        self, filters: Iterable[tuple[str, str, object]]
    ) -> builtins.list[ColumnElement[bool]]: ...


class AsyncRepositoryProtocol(Protocol[T]):
    """The async twin of [`RepositoryProtocol`][uow.RepositoryProtocol]: what
    [`AsyncRepository`][uow.AsyncRepository] offers.

    Satisfied by [`AsyncRepository`][uow.AsyncRepository] and
    [`AsyncInMemoryRepository`][uow.testing.AsyncInMemoryRepository].
    """

    @property
    def model(self) -> type[T]:
        """The mapped class this repository reads and writes."""
        ...

    async def add(self, obj: T) -> T: ...
    async def add_all(self, objs: Iterable[T]) -> builtins.list[T]: ...
    async def remove(self, obj: T) -> None: ...
    async def insert_many(self, rows: Iterable[Mapping[str, Any]]) -> int: ...
    async def upsert(
        self,
        obj_or_mapping: T | Mapping[str, Any],
        *,
        on: str | Sequence[str] | None = None,
        update: Sequence[str] | Mapping[str, Any] | None = None,
    ) -> T: ...
    async def upsert_many(
        self,
        rows: Iterable[T | Mapping[str, Any]],
        *,
        on: str | Sequence[str] | None = None,
        update: Sequence[str] | Mapping[str, Any] | None = None,
    ) -> builtins.list[T]: ...
    async def get_or_create(
        self, defaults: Mapping[str, Any] | None = None, **keys: Any
    ) -> tuple[T, bool]: ...
    async def update_where(
        self, values: Mapping[str, Any], *where: ColumnElement[bool], **equals: Any
    ) -> int: ...
    async def delete_where(self, *where: ColumnElement[bool], **equals: Any) -> int: ...
    async def stream(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        batch_size: int = 1000,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> AsyncIterator[T]: ...
    async def get(
        self, ident: Any, *, for_update: ForUpdate = False, options: LoadOptions = ()
    ) -> T | None: ...
    async def get_one(self, ident: Any, *, for_update: ForUpdate = False, options: LoadOptions = ()) -> T: ...
    async def list(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> builtins.list[T]: ...
    async def first(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T | None: ...
    async def one(
        self,
        *where: ColumnElement[bool],
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T: ...
    async def get_one_or_none(
        self,
        *where: ColumnElement[bool],
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T | None: ...
    async def count(self, *where: ColumnElement[bool], **equals: Any) -> int: ...
    async def exists(self, *where: ColumnElement[bool], **equals: Any) -> bool: ...
    async def list_and_count(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        options: LoadOptions = (),
        **equals: Any,
    ) -> tuple[builtins.list[T], int]: ...
    async def page(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int = 50,
        after: str | None = None,
        before: str | None = None,
        options: LoadOptions = (),
        **equals: Any,
    ) -> Page[T]: ...
    def parse_query(self, params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> ParsedQuery: ...
    def parse_filters(
        self, filters: Iterable[tuple[str, str, object]]
    ) -> builtins.list[ColumnElement[bool]]: ...


class UnitOfWorkProtocol(Protocol):
    """A block of work that commits only when told to: what [`UnitOfWork`][uow.UnitOfWork] offers.

    Satisfied by [`UnitOfWork`][uow.UnitOfWork] and [`InMemoryUnitOfWork`][uow.testing.InMemoryUnitOfWork].
    `repository(UserRepository)` for a repository class of your own (a subclass of
    [`Repository`][uow.Repository]) is typed as that class; the in-memory unit runs its extra methods on the
    in-memory store.
    """

    @property
    def active(self) -> bool:
        """Whether the unit is inside its block."""
        ...

    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def savepoint(self) -> AbstractContextManager[None]: ...
    def on_commit(self, fn: Callable[[], object], *, robust: bool = False) -> None: ...
    def on_rollback(self, fn: Callable[[], object], *, robust: bool = False) -> None: ...
    @overload
    def repository(self, target: type[R]) -> R: ...
    @overload
    def repository(self, target: type[T]) -> RepositoryProtocol[T]: ...


class AsyncUnitOfWorkProtocol(Protocol):
    """The async twin of [`UnitOfWorkProtocol`][uow.UnitOfWorkProtocol]: what
    [`AsyncUnitOfWork`][uow.AsyncUnitOfWork] offers.

    Satisfied by [`AsyncUnitOfWork`][uow.AsyncUnitOfWork] and
    [`AsyncInMemoryUnitOfWork`][uow.testing.AsyncInMemoryUnitOfWork].
    """

    @property
    def active(self) -> bool:
        """Whether the unit is inside its block."""
        ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...
    def savepoint(self) -> AbstractAsyncContextManager[None]: ...
    def on_commit(self, fn: Callable[[], object], *, robust: bool = False) -> None: ...
    def on_rollback(self, fn: Callable[[], object], *, robust: bool = False) -> None: ...
    @overload
    def repository(self, target: type[AR]) -> AR: ...
    @overload
    def repository(self, target: type[T]) -> AsyncRepositoryProtocol[T]: ...
