"""The async repository: the same reads and writes as `Repository`, awaited, on an `AsyncSession`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement
from sqlalchemy import exc as sa_exc

from uow._errors import MultipleResultsError, NotFoundError, StateError
from uow._listeners import mark_written
from uow._repository import OrderBy, _RepositoryCore, raise_translated

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


class AsyncRepository(_RepositoryCore[T]):
    """The async twin of [`Repository`][uow.Repository]: the same methods and rules, awaited, on an
    `AsyncSession`.

    Build one with `unit.repository(User)` on an [`AsyncUnitOfWork`][uow.AsyncUnitOfWork], or subclass it as
    `class UserRepository(AsyncRepository[User])`. Every method is a coroutine, including
    `add()` and `add_all()`, which do no I/O themselves.

    Calls are refused with [`StateError`][uow.StateError] while another call of the same unit is still
    running, as happens with `asyncio.gather` over one unit: an `AsyncSession` must not be used by
    two tasks at once. Reads load the model's columns; relationships stay lazy, and loading them
    later would need implicit I/O that async code cannot do: load them eagerly (`selectinload`)
    with a query through `unit.session`, or with `await unit.session.refresh(obj, ["rel"])`.
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
        except sa_exc.DBAPIError as exc:
            raise_translated(exc)
        finally:
            guard.running = None

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

    # -- reads ----------------------------------------------------------------------------------

    async def stream(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        batch_size: int = 1000,
        **equals: Any,
    ) -> AsyncIterator[T]:
        """An async iterator over the objects that match, fetched `batch_size` rows at a time.

        `async for user in await users.stream(active=True): ...`; see `Repository.stream()`.
        Finish or close the iterator before the next call on the same unit.
        """
        self._check_batch(batch_size)
        statement = self._select(where, equals, order_by).execution_options(yield_per=batch_size)
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
        except sa_exc.DBAPIError as exc:
            raise_translated(exc)
        finally:
            await result.close()

    async def get(self, ident: Any) -> T | None:
        """The object with primary key `ident`, or `None`; the identity map is looked at first."""
        found: T | None = await self._run("get()", self.session.get, self.model, ident)
        return found

    async def get_one(self, ident: Any) -> T:
        """The object with primary key `ident`.

        Raises:
            NotFoundError: There is none; the message names the model and its primary-key fields,
                never the value of `ident`.
        """
        obj = await self.get(ident)
        if obj is None:
            raise self._not_found(ident)
        return obj

    async def list(
        self,
        *where: ColumnElement[bool],
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int | None = None,
        **equals: Any,
    ) -> list[T]:
        """The objects that match every filter, in `order_by` order, paged by `limit`/`offset`."""
        statement = self._select(where, equals, order_by, limit, offset)
        result = await self._run("list()", self.session.scalars, statement)
        return list(result.all())

    async def first(self, *where: ColumnElement[bool], order_by: OrderBy = None, **equals: Any) -> T | None:
        """The first object that matches, in `order_by` order, or `None` when none does."""
        statement = self._select(where, equals, order_by, 1)
        result = await self._run("first()", self.session.scalars, statement)
        first: T | None = result.first()
        return first

    async def one(self, *where: ColumnElement[bool], **equals: Any) -> T:
        """The only object that matches.

        Raises:
            NotFoundError: None matches.
            MultipleResultsError: More than one matches.
        """
        statement = self._select(where, equals)
        result = await self._run("one()", self.session.scalars, statement)
        try:
            one: T = result.one()
        except sa_exc.NoResultFound as exc:
            raise NotFoundError(self.model, self._describe(where, equals)) from exc
        except sa_exc.MultipleResultsFound as exc:
            raise MultipleResultsError(self.model, self._describe(where, equals)) from exc
        return one

    async def count(self, *where: ColumnElement[bool], **equals: Any) -> int:
        """How many objects match."""
        statement = self._count(where, equals)
        return int(await self._run("count()", self.session.scalar, statement) or 0)

    async def exists(self, *where: ColumnElement[bool], **equals: Any) -> bool:
        """Whether at least one object matches."""
        statement = self._exists(where, equals)
        return bool(await self._run("exists()", self.session.scalar, statement))
