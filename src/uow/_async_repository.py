"""The async repository: the same reads and writes as `Repository`, awaited, on an `AsyncSession`."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from uow._errors import MultipleResultsError, NotFoundError, StateError
from uow._listeners import mark_written
from uow._locks import ForUpdate, LoadOptions
from uow._model import TRANSLATED, raise_translated
from uow._pages import Page, list_and_count, read_page
from uow._query import OrderBy, RepositoryCore
from uow._writes import bulk_delete, bulk_update, check_key, get_or_create, run_bulk, upsert_rows

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["AsyncRepository", "CallGuard"]

T = TypeVar("T")


class CallGuard:
    """Refuses a second I/O call on an async unit while one is still running in another task."""

    __slots__ = ("running",)

    def __init__(self) -> None:
        self.running: str | None = None

    def enter(self, action: str) -> None:
        if self.running is not None:
            raise StateError(
                f"{action} was called while {self.running} is still running on the same unit of work, "
                "probably from another task: a unit serves one task at a time. Await each call before "
                "starting the next, or give each concurrent task a unit of its own"
            )
        self.running = action

    def call(self, action: str) -> CallGuard:
        """`with guard.call("commit()"):` runs one call, refusing any other meanwhile."""
        self.enter(action)
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self.running = None


class AsyncRepository(RepositoryCore[T]):
    """The async twin of [`Repository`][uow.Repository]: the same methods and rules, awaited, on an
    `AsyncSession`.

    Build one with `unit.repository(User)` on an [`AsyncUnitOfWork`][uow.AsyncUnitOfWork], or subclass it as
    `class UserRepository(AsyncRepository[User])`. Every method that works on the session is a
    coroutine, including `add()` and `add_all()`, which do no I/O themselves; `parse_query()` and
    `parse_filters()`, which only build expressions, are not.

    Calls are refused with [`StateError`][uow.StateError] while another call of the same unit is still
    running, as happens with `asyncio.gather` over one unit: an `AsyncSession` must not be used by
    two tasks at once. Reads load the model's columns; relationships stay lazy, and loading them
    later would need implicit I/O that async code cannot do: name them in `options=`
    (`await users.get(1, options=(selectinload(User.tags),))`), or load them with
    `await unit.session.refresh(obj, ["tags"])`.
    """

    session: AsyncSession
    """The async session this repository works in."""

    def __init__(
        self, session: AsyncSession, model: type[T] | None = None, *, _guard: CallGuard | None = None
    ) -> None:
        """Bind the repository to `session`.

        Args:
            session: The async session to work in; usually the unit of work's.
            model: The mapped class; required unless the subclass names it as
                `AsyncRepository[Model]`.

        Raises:
            InvalidArgumentError: The model is missing or is not a mapped class.
        """
        self._bind_model(model)
        self.session = session
        self._guard = _guard if _guard is not None else CallGuard()

    async def _run(self, action: str, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        guard = self._guard
        guard.enter(action)
        try:
            return await call(*args)
        except TRANSLATED as exc:
            raise_translated(exc)
        finally:
            guard.running = None

    def _sync_session(self) -> Session:
        return self.session.sync_session

    # -- writes ---------------------------------------------------------------------------------

    async def add(self, obj: T) -> T:
        """Add `obj` to the session, to be inserted at the next flush; returns `obj`.

        Raises:
            InvalidArgumentError: `obj` is not an instance of the model.
        """
        self._check_instance(obj, "add")
        self.session.add(obj)
        return obj

    async def add_all(self, objs: Iterable[T]) -> list[T]:
        """Add every object of `objs` to the session; returns them as a list.

        Raises:
            InvalidArgumentError: One of them is not an instance of the model; none is added then.
        """
        added = list(objs)
        for obj in added:
            self._check_instance(obj, "add_all")
        self.session.add_all(added)
        return added

    async def remove(self, obj: T) -> None:
        """Mark `obj` for deletion at the next flush; a never-flushed object is just taken out.

        Raises:
            InvalidArgumentError: `obj` is not an instance of the model, or was never persisted.
        """
        if self._pending_removal(obj):
            self.session.expunge(obj)
        else:
            await self._run("remove()", self.session.delete, obj)

    async def insert_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert `rows` in as few statements as the driver allows; see `Repository.insert_many()`."""
        checked = self._rows(rows)
        if not checked:
            return 0
        await self._run("insert_many()", self.session.execute, self._info.insert, checked)
        mark_written(self.session.sync_session)
        return len(checked)

    async def upsert(
        self,
        obj_or_mapping: T | Mapping[str, Any],
        *,
        on: str | Sequence[str] | None = None,
        update: Sequence[str] | Mapping[str, Any] | None = None,
    ) -> T:
        """Insert one row or update the row it collides with on `on`; see `Repository.upsert()`."""
        written = await self.upsert_many([obj_or_mapping], on=on, update=update)
        return written[0]

    async def upsert_many(
        self,
        rows: Iterable[T | Mapping[str, Any]],
        *,
        on: str | Sequence[str] | None = None,
        update: Sequence[str] | Mapping[str, Any] | None = None,
    ) -> list[T]:
        """Insert rows, updating those that collide on `on`; see `Repository.upsert_many()`."""
        info = self._info
        keys = check_key(info, on, "upsert")
        converted = self._upsert_rows(rows, "upsert_many()")
        if not converted:
            return []
        written: list[T] = await self._run(
            "upsert_many()", self.session.run_sync, upsert_rows, info, converted, keys, update
        )
        return written

    async def get_or_create(self, defaults: Mapping[str, Any] | None = None, **keys: Any) -> tuple[T, bool]:
        """The object whose unique `keys` match, created if none does; see `Repository.get_or_create()`."""
        found: tuple[T, bool] = await self._run(
            "get_or_create()", self.session.run_sync, get_or_create, self._info, keys, defaults or {}
        )
        return found

    async def update_where(
        self, values: Mapping[str, Any], *where: ColumnElement[bool], **equals: Any
    ) -> int:
        """Set `values` in every matching row with one `UPDATE`; see `Repository.update_where()`."""
        statement = bulk_update(self._info, values, self._criteria(where, equals))
        return int(await self._run("update_where()", self.session.run_sync, run_bulk, statement))

    async def delete_where(self, *where: ColumnElement[bool], **equals: Any) -> int:
        """Delete every matching row with one `DELETE`; see `Repository.delete_where()`."""
        statement = bulk_delete(self._info, self._criteria(where, equals))
        return int(await self._run("delete_where()", self.session.run_sync, run_bulk, statement))

    # -- reads ----------------------------------------------------------------------------------

    async def stream(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        batch_size: int = 1000,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> AsyncIterator[T]:
        """An async iterator over the objects that match, fetched `batch_size` rows at a time.

        `async for user in await users.stream(active=True): ...`; see `Repository.stream()`.
        Finish or close the iterator before the next call on the same unit.
        """
        self._check_batch(batch_size)
        statement = self._select(where, equals, order_by)
        if for_update is not False or options:
            statement = self._reading(statement, for_update, options)
        statement = statement.execution_options(yield_per=batch_size)
        result = await self._run("stream()", self.session.stream_scalars, statement)
        return self._stream(result)

    async def _stream(self, result: Any) -> AsyncIterator[T]:
        guard = self._guard
        try:
            while True:
                guard.enter("stream()")
                try:
                    obj = await result.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    guard.running = None
                yield obj
        except TRANSLATED as exc:
            raise_translated(exc)
        finally:
            await result.close()

    async def get(self, ident: Any, *, for_update: ForUpdate = False, options: LoadOptions = ()) -> T | None:
        """The object with primary key `ident`, or `None`; see `Repository.get()`."""
        if for_update is False and not options:
            found: T | None = await self._run("get()", self.session.get, self.model, ident)
            return found
        statement = self._reading(self._info.select.where(*self._by_key(ident)), for_update, options)
        result = await self._run("get()", self.session.scalars, statement)
        one: T | None = (result.unique() if options else result).one_or_none()
        return one

    async def get_one(self, ident: Any, *, for_update: ForUpdate = False, options: LoadOptions = ()) -> T:
        """The object with primary key `ident`.

        Raises:
            NotFoundError: There is none; the message names the model and its primary-key fields,
                never the value of `ident`.
        """
        obj = await self.get(ident, for_update=for_update, options=options)
        if obj is None:
            raise self._not_found(ident)
        return obj

    async def list(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> list[T]:
        """The objects that match every filter, in `order_by` order, paged by `limit`/`offset`."""
        statement = self._select(where, equals, order_by, limit, offset)
        if for_update is not False or options:
            statement = self._reading(statement, for_update, options)
        result = await self._run("list()", self.session.scalars, statement)
        return list((result.unique() if options else result).all())

    async def first(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T | None:
        """The first object that matches, in `order_by` order, or `None` when none does."""
        statement = self._select(where, equals, order_by, 1)
        if for_update is not False or options:
            statement = self._reading(statement, for_update, options)
        result = await self._run("first()", self.session.scalars, statement)
        first: T | None = (result.unique() if options else result).first()
        return first

    async def one(
        self,
        *where: ColumnElement[bool],
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T:
        """The only object that matches.

        Raises:
            NotFoundError: None matches.
            MultipleResultsError: More than one matches.
        """
        found = await self.get_one_or_none(*where, for_update=for_update, options=options, **equals)
        if found is None:
            raise NotFoundError(self.model, self._describe(where, equals))
        return found

    async def get_one_or_none(
        self,
        *where: ColumnElement[bool],
        for_update: ForUpdate = False,
        options: LoadOptions = (),
        **equals: Any,
    ) -> T | None:
        """The only object that matches, or `None` when none does.

        Raises:
            MultipleResultsError: More than one matches.
        """
        statement: Select[Any] = self._select(where, equals)
        if for_update is not False or options:
            statement = self._reading(statement, for_update, options)
        result = await self._run("get_one_or_none()", self.session.scalars, statement)
        try:
            found: T | None = (result.unique() if options else result).one_or_none()
        except sa_exc.MultipleResultsFound as exc:
            raise MultipleResultsError(self.model, self._describe(where, equals)) from exc
        return found

    async def count(self, *where: ColumnElement[bool], **equals: Any) -> int:
        """How many objects match."""
        statement = self._count(where, equals)
        return int(await self._run("count()", self.session.scalar, statement) or 0)

    async def exists(self, *where: ColumnElement[bool], **equals: Any) -> bool:
        """Whether at least one object matches."""
        statement = self._exists(where, equals)
        return bool(await self._run("exists()", self.session.scalar, statement))

    async def list_and_count(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        options: LoadOptions = (),
        **equals: Any,
    ) -> tuple[builtins.list[T], int]:
        """A page of `list()` and the total, in one round trip; see `Repository.list_and_count()`."""
        statement = self._select(where, equals, order_by, limit, offset)
        if options:
            statement = self._reading(statement, False, options)
        count = self._count(where, equals)
        found: tuple[builtins.list[T], int] = await self._run(
            "list_and_count()",
            self.session.run_sync,
            list_and_count,
            statement,
            count,
            limit,
            offset,
            bool(options),
        )
        return found

    async def page(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int = 50,
        after: str | None = None,
        before: str | None = None,
        options: LoadOptions = (),
        **equals: Any,
    ) -> Page[T]:
        """A page of the matches in keyset order, with cursors; see `Repository.page()`."""
        plan = self._page(where, equals, order_by, limit, after, before, options)
        found: Page[T] = await self._run("page()", self.session.run_sync, read_page, plan)
        return found
