"""The async unit of work: the same rules as [`UnitOfWork`][uow.UnitOfWork], on an `AsyncSession`.

Its cancellation policy is `_cleanup_async`, in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from sqlalchemy import exc as sa_exc

from uow._async_repository import AsyncRepository, CallGuard
from uow._base import CLOSING, RECOVERING, AsyncAttempts, UnitBase, to_undo
from uow._classify import translate
from uow._listeners import Ledger, discard_connections, settle
from uow._retry import Retry
from uow._rules import (
    already_active,
    attach_failure,
    cleanup_failure_wins,
    interrupted,
    make_options,
    partial_savepoint,
)
from uow._sqlite import check_savepoints

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction
    from sqlalchemy.orm import Session

__all__ = ["AsyncUnitOfWork"]

T = TypeVar("T")
AR = TypeVar("AR", bound=AsyncRepository[Any])


class AsyncUnitOfWork(UnitBase):
    """The async twin of [`UnitOfWork`][uow.UnitOfWork], on an `AsyncSession`.

    ```python
    async with AsyncUnitOfWork(async_session) as unit:
        await unit.repository(User).add(User(id="7", name="hanmeimei"))
        await unit.commit()
    ```

    It keeps every rule of [`UnitOfWork`][uow.UnitOfWork]: nothing is committed implicitly, leaving the block
    or an exception rolls back, the same warning, errors, savepoints, hooks and events; hooks and the
    dispatcher may be coroutine functions. In addition:

    - Cancellation (`asyncio.CancelledError`, including from `asyncio.timeout`) anywhere in the
      block, during `commit()` or during exit invalidates the connection (it may have been cut
      off mid-statement; the server rolls back) and the cleanup runs to its end before the
      cancellation propagates. The connection is always returned to the pool. A cancellation that
      arrives while the unit cleans up after another error propagates as a cancellation.
    - One call at a time: starting `commit()`, `rollback()` or a repository method while
      another one of the same unit is still running (`asyncio.gather` over one unit) raises
      [`StateError`][uow.StateError]. Calls made one after another from different tasks are fine.
    - Objects stay loaded after a commit by default (`expire_on_commit=False`), because reading an
      expired attribute would need implicit I/O, which async code cannot do.
    """

    __slots__ = ("_expire_on_commit", "_guard")

    def __init__(
        self,
        session_factory: Callable[[], AsyncSession],
        *,
        expire_on_commit: bool | None = False,
        dispatch: Callable[[Any], Any] | None = None,
        isolation_level: str | None = None,
        read_only: bool = False,
        durable: bool = False,
    ) -> None:
        """Create a unit that opens its sessions with `session_factory`.

        Args:
            session_factory: An `async_sessionmaker`, or any callable
                taking no arguments that returns a new `AsyncSession`.
            expire_on_commit: Whether `commit()` expires the objects the session holds. The
                default, `False`, keeps them loaded, so that reading an attribute after a commit
                never needs the implicit I/O that async code cannot do; `True` expires them as
                plain SQLAlchemy does (reload them with `await unit.session.refresh(obj)`);
                `None` keeps whatever the factory's sessions are configured with.
            dispatch: As for [`UnitOfWork`][uow.UnitOfWork]; may be a coroutine function.
            isolation_level: As for [`UnitOfWork`][uow.UnitOfWork].
            read_only: As for [`UnitOfWork`][uow.UnitOfWork].
            durable: As for [`UnitOfWork`][uow.UnitOfWork].

        Raises:
            InvalidArgumentError: `session_factory` is not callable, or an option is invalid.
        """
        super().__init__(
            session_factory, make_options(dispatch, isolation_level, read_only, durable, allow_async=True)
        )
        self._guard = CallGuard()
        self._expire_on_commit = expire_on_commit

    async def __aenter__(self) -> Self:
        from sqlalchemy.ext.asyncio import AsyncSession  # here: importing uow never needs greenlet

        session: AsyncSession = self._enter(AsyncSession)
        self._guard = CallGuard()
        if self._expire_on_commit is not None:
            session.sync_session.expire_on_commit = self._expire_on_commit
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session: AsyncSession | None = self._session
        if session is None:
            return
        ledger, discarded = self._leave(exc)
        try:
            await _cleanup_async(lambda error: _close_async(session, ledger, error), exc, exc, CLOSING)
        except BaseException as failure:
            self._left(ledger, failure, None)
            raise
        self._left(ledger, exc, discarded)

    @property
    def session(self) -> AsyncSession:
        """The live async session of the active block.

        Raises:
            StateError: The unit is not active.
        """
        session: AsyncSession = self._active("unit.session")
        return session

    async def commit(self) -> None:
        """Flush pending changes and commit the transaction; see `UnitOfWork.commit()`.

        If the commit is cancelled, whether it reached the database is unknown: the connection is
        invalidated and the cancellation propagates.

        Raises:
            StateError: As for `UnitOfWork.commit()`, or another call of this unit is still
                running.
        """
        session: AsyncSession = self._active("commit()")
        with self._guard.call("commit()"):
            ledger = self._check_commit(session.sync_session)
            done = ledger.commits_done
            try:
                await session.run_sync(_flush_and_commit)  # one trip into the greenlet, not two
            except BaseException as exc:
                error = self._failed_commit(ledger, done, exc)
                if error is not None:
                    await _cleanup_async(
                        lambda cause: _recover_async(session, cause),
                        exc,
                        error,
                        RECOVERING,
                    )
                self._failed(ledger, error or exc)
                if error is None or error is exc:
                    raise
                raise error from exc
        self._finished(ledger, committed=True)

    async def rollback(self) -> None:
        """Discard pending changes and roll back the transaction; see `UnitOfWork.rollback()`.

        Raises:
            StateError: The unit is not active, a savepoint is open, or another call of this unit is
                still running.
            HookError: An after-rollback hook failed (after all of them ran).
        """
        session: AsyncSession = self._active("rollback()")
        with self._guard.call("rollback()"):
            ledger = self._check_rollback(session.sync_session)
            try:
                await session.rollback()
                if ledger.pending:
                    await session.run_sync(settle, ledger)
            except BaseException as exc:
                if interrupted(exc):  # cut off mid-rollback: the connection's state is unknown
                    await _cleanup_async(
                        lambda _: session.invalidate(), exc, exc, "invalidating the connection"
                    )
                self._failed(ledger, exc)
                raise
        self._finished(ledger, committed=False)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: `async with unit.savepoint():`; see `UnitOfWork.savepoint()`."""
        session: AsyncSession = self._active("savepoint()")
        with self._guard.call("savepoint()"):
            await session.run_sync(check_savepoints)
            nested = await session.begin_nested()
        scope = self._savepoint_scope()
        ledger = self._ledger
        assert ledger is not None
        try:
            yield
        except BaseException as exc:
            if not interrupted(exc):
                self._defer()
                await _cleanup_async(
                    lambda _: _roll_back_async(session, nested), exc, exc, "rolling back the savepoint"
                )
                self._failed(ledger, exc)
            raise
        if not self._releasing(scope, session.sync_session, nested.sync_transaction):
            return
        if scope.failed:
            self._defer()
            await _roll_back_async(session, nested)
            error = partial_savepoint()
            self._failed(ledger, error)
            raise error
        try:
            await nested.commit()
        except BaseException as exc:
            await _cleanup_async(
                lambda _: _roll_back_async(session, nested), exc, exc, "rolling back the savepoint"
            )
            translated = translate(exc) if isinstance(exc, sa_exc.SQLAlchemyError) else None
            if translated is None:
                raise
            raise translated from exc

    def attempts(self, retry: Retry | None = None) -> AsyncAttempts[Self]:
        """The attempts of this unit's work: `async for attempt in unit.attempts(retry):`.

        `async with attempt as unit:` runs one; see `UnitOfWork.attempts()`.

        Raises:
            StateError: The unit is active already.
        """
        if self._session is not None:
            raise already_active()
        return AsyncAttempts(self, retry if retry is not None else Retry())

    async def run(self, work: Callable[[Self], Awaitable[T]], *, retry: Retry | None = None) -> T:
        """Await `work(unit)` in this unit, again after transient failures; see `UnitOfWork.run()`."""
        async for attempt in self.attempts(retry):
            async with attempt:
                return await work(self)
        raise AssertionError("a retry loop ends by returning or raising")  # pragma: no cover

    @overload
    def repository(self, target: type[AR]) -> AR: ...
    @overload
    def repository(self, target: type[T]) -> AsyncRepository[T]: ...
    def repository(self, target: type[Any]) -> AsyncRepository[Any]:
        """The async repository for `target` in this block, created on first use.

        `target` is a mapped class (giving an [`AsyncRepository`][uow.AsyncRepository] of it) or a subclass of
        [`AsyncRepository`][uow.AsyncRepository]. Within one block the same `target` gives the same instance.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: `target` is neither a mapped class nor a repository class.
        """
        repository = self._repositories.get(target)
        if repository is not None:
            return repository  # type: ignore[no-any-return]  # the cache holds what was built below
        session = self._active("repository()")
        if isinstance(target, type) and issubclass(target, AsyncRepository):
            repository = target(session, _guard=self._guard)
        else:
            repository = AsyncRepository(session, target, _guard=self._guard)
        self._repositories[target] = repository
        return repository


# -- the I/O ------------------------------------------------------------------------------------


async def _cleanup_async(
    step: Callable[[BaseException | None], Coroutine[Any, Any, None]],
    cause: BaseException | None,
    error: BaseException | None,
    during: str,
) -> None:
    """As `_cleanup`, under the async unit's cancellation policy: the whole policy is here.

    A cleanup after an error runs to its end even if the task is cancelled meanwhile, and the
    cancellation is raised once it is over (the caller never carries on while a connection is on its
    way back to the pool). A cleanup after no error is awaited directly; if it is cancelled, it is
    redone as after an interruption (invalidating the connection) and the cancellation propagates.
    """
    if error is None:
        try:
            await step(None)
        except asyncio.CancelledError as cancelled:
            await _finish(step(cancelled))
            raise
        return
    try:
        await _finish(step(cause))
    except BaseException as failure:
        if cleanup_failure_wins(failure, error):
            raise
        attach_failure(error, failure, during)


async def _finish(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run `cleanup` to its end even if the calling task is cancelled meanwhile, then re-raise that."""
    task = asyncio.ensure_future(cleanup)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.done():
                raise
            cancelled = exc
        else:
            break
    if cancelled is not None:
        raise cancelled


def _flush_and_commit(session: Session) -> None:
    session.flush()  # first: a failure now is known not to have reached COMMIT
    session.commit()


async def _close_async(session: AsyncSession, ledger: Ledger, error: BaseException | None) -> None:
    try:
        if error is not None and interrupted(error):
            await session.invalidate()
        else:
            await session.close()
    except BaseException:
        await session.run_sync(discard_connections)
        raise
    if ledger.pending:
        await session.run_sync(settle, ledger)


async def _recover_async(session: AsyncSession, error: BaseException | None) -> None:
    if error is not None and interrupted(error):
        await session.invalidate()
    else:
        await session.rollback()


async def _roll_back_async(session: AsyncSession, nested: AsyncSessionTransaction) -> None:
    transaction = nested.sync_transaction
    undo = None if transaction is None else to_undo(session.sync_session, transaction)
    if undo == "savepoint":
        await nested.rollback()
    elif undo == "transaction":
        await session.rollback()
