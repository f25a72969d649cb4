"""The async unit of work: the same rules as [`UnitOfWork`][uow.UnitOfWork], on an `AsyncSession`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from sqlalchemy import exc as sa_exc

from uow._async_repository import AsyncRepository, CallGuard
from uow._classify import translate
from uow._core import (
    UnitCore,
    already_active,
    attach_failure,
    attach_hook_failures,
    interrupted,
    partial_savepoint,
    skip_rollback_hooks,
    unknown_outcome,
    warn_uncommitted,
)
from uow._retry import AsyncAttempts, Retry
from uow._session import discard_connections, uncommitted_work
from uow._sqlite import check_savepoints
from uow._transaction import (
    after_commit_async,
    hook_error,
    outside_unit,
    run_hooks_async,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["AsyncUnitOfWork"]

T = TypeVar("T")
AR = TypeVar("AR", bound=AsyncRepository[Any])


class AsyncUnitOfWork(UnitCore):
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
      cancellation propagates. The connection is always returned to the pool.
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
        super().__init__(session_factory, dispatch, isolation_level, read_only, durable, allow_async=True)
        self._guard = CallGuard()
        self._expire_on_commit = expire_on_commit

    async def __aenter__(self) -> Self:
        from sqlalchemy.ext.asyncio import AsyncSession

        session: AsyncSession = self._open(AsyncSession)
        sync = session.sync_session
        if self._expire_on_commit is not None:
            sync.expire_on_commit = self._expire_on_commit
        self._guard = CallGuard()
        self._start(session, sync)
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
        sync = session.sync_session
        self._drop_events(sync)
        discarded = uncommitted_work(sync) if exc is None else None
        session, frames = self._release()
        failures: list[Exception] = []
        if exc is None:
            try:
                await _end(session, None)
            except asyncio.CancelledError as cancelled:  # finish the cleanup, then let it through
                await _finish(_end(session, cancelled))
                raise
            if frames is not None:
                await run_hooks_async(frames.end().on_rollback, failures, "after-rollback")
            if discarded is not None:
                warn_uncommitted(discarded)
            if failures:
                raise hook_error(failures, committed=False)
            return
        try:
            await _finish(_end(session, exc))
        except BaseException as failure:
            if _cancelled_during_cleanup(failure, exc):
                raise
            attach_failure(exc, failure, "rolling back and closing the session")
        if frames is not None:
            await run_hooks_async(frames.end().on_rollback, failures, "after-rollback")
            attach_hook_failures(exc, failures)

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
        guard = self._guard
        guard.enter("commit()")
        try:
            events = self._check_commit(session.sync_session)
            try:
                sent = self._commits_sent
                await session.flush()  # first: a failure now is known not to have reached COMMIT
                await session.commit()
            except BaseException as exc:
                translated = (
                    translate(exc, commit_sent=self._commits_sent > sent)
                    if isinstance(exc, sa_exc.DBAPIError)
                    else None
                )
                try:
                    await _finish(_recover(session, exc))
                except BaseException as failure:
                    if _cancelled_during_cleanup(failure, exc):
                        raise
                    attach_failure(translated or exc, failure, "rolling back the failed commit")
                root = self._end_transaction()
                if unknown_outcome(exc, translated):
                    skip_rollback_hooks(root)
                elif root is not None and root.on_rollback:
                    failures: list[Exception] = []
                    with outside_unit():
                        await run_hooks_async(root.on_rollback, failures, "after-rollback")
                    attach_hook_failures(translated or exc, failures)
                if translated is not None:
                    raise translated from exc
                raise
        finally:
            guard.running = None
        root = self._end_transaction()
        if events or (root is not None and root.on_commit):
            await after_commit_async(self._options.dispatch, events, root)

    async def rollback(self) -> None:
        """Discard pending changes and roll back the transaction; see `UnitOfWork.rollback()`.

        Raises:
            StateError: The unit is not active, it is inside a savepoint block, or another call of
                this unit is still running.
            HookError: An after-rollback hook failed (after all of them ran).
        """
        session: AsyncSession = self._active("rollback()")
        self._check_rollback(session.sync_session)
        guard = self._guard
        guard.enter("rollback()")
        try:
            await session.rollback()
        except BaseException as exc:
            if interrupted(exc):  # cut off mid-rollback: the connection's state is unknown
                try:
                    await _finish(session.invalidate())
                except BaseException as failure:
                    if _cancelled_during_cleanup(failure, exc):
                        raise
                    attach_failure(exc, failure, "invalidating the connection")
            root = self._end_transaction()  # the transaction's hooks go with it, run or not
            if not interrupted(exc) and root is not None and root.on_rollback:
                failures: list[Exception] = []
                with outside_unit():
                    await run_hooks_async(root.on_rollback, failures, "after-rollback")
                attach_hook_failures(exc, failures)
            raise
        finally:
            guard.running = None
        root = self._end_transaction()
        if root is not None and root.on_rollback:
            failures = []
            with outside_unit():
                await run_hooks_async(root.on_rollback, failures, "after-rollback")
            if failures:
                raise hook_error(failures, committed=False)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: `async with unit.savepoint():`; see `UnitOfWork.savepoint()`."""
        session: AsyncSession = self._active("savepoint()")
        sync = session.sync_session
        await session.run_sync(check_savepoints)
        frames = self._frames_of_block()
        guard = self._guard
        guard.enter("savepoint()")
        try:
            nested = await session.begin_nested()
        finally:
            guard.running = None
        frame = frames.push()
        try:
            yield
        except BaseException as exc:
            frames.discard(frame)
            self._drop_events(sync, frame.mark)
            if not interrupted(exc):
                try:
                    if sync.get_nested_transaction() is nested.sync_transaction:
                        await nested.rollback()
                except BaseException as failure:
                    attach_failure(exc, failure, "rolling back the savepoint")
            failures: list[Exception] = []
            with outside_unit():
                await run_hooks_async(frame.on_rollback, failures, "after-rollback")
            attach_hook_failures(exc, failures)
            raise
        if frame.failed:
            frames.discard(frame)
            self._drop_events(sync, frame.mark)
            await nested.rollback()
            failures = []
            with outside_unit():
                await run_hooks_async(frame.on_rollback, failures, "after-rollback")
            error = partial_savepoint()
            attach_hook_failures(error, failures)
            raise error
        try:
            await nested.commit()
        except BaseException as exc:
            frames.discard(frame)
            self._drop_events(sync, frame.mark)
            if sync.get_nested_transaction() is nested.sync_transaction:
                try:
                    await nested.rollback()
                except BaseException as failure:
                    attach_failure(exc, failure, "rolling back the savepoint")
                    frames.top.failed = True
            else:  # the driver gave up on the savepoint: its outcome is unknown, so refuse to commit
                frames.top.failed = True
            translated = translate(exc) if isinstance(exc, sa_exc.DBAPIError) else None
            if translated is not None:
                raise translated from exc
            raise
        frames.release(frame)

    def on_commit(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        """Run `fn()` (awaited if it is a coroutine function) after the commit; see
        `UnitOfWork.on_commit()`."""
        self._register("on_commit()", fn, robust, allow_async=True).on_commit.append((fn, robust))

    def on_rollback(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        """Run `fn()` (awaited if it is a coroutine function) when the work rolls back; see
        `UnitOfWork.on_rollback()`."""
        self._register("on_rollback()", fn, robust, allow_async=True).on_rollback.append((fn, robust))

    def attempts(self, retry: Retry | None = None) -> AsyncAttempts:
        """The attempts of this unit's work: `async for attempt in unit.attempts(retry):`.

        `async with attempt as unit:` runs one; see `UnitOfWork.attempts()`.

        Raises:
            StateError: The unit is active already.
        """
        if self._session is not None:
            raise already_active()
        return AsyncAttempts(self, retry if retry is not None else Retry())

    async def run(self, work: Callable[[Self], Awaitable[T]], *, retry: Retry | None = None) -> T:
        """Await `work(unit)` in this unit, again after transient failures; see
        `UnitOfWork.run()`."""
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


async def _finish(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run `cleanup` to its end even if the calling task is cancelled meanwhile.

    A cancellation that arrives while waiting is raised again once the cleanup is over, so that the
    caller never carries on while a connection is still on its way back to the pool.
    """
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


async def _end(session: AsyncSession, exc: BaseException | None) -> None:
    """Close `session`, returning its connection to the pool whatever happens."""
    try:
        if exc is not None and interrupted(exc):
            await session.invalidate()
        else:
            await session.close()
    except BaseException:
        await session.run_sync(discard_connections)
        raise


async def _recover(session: AsyncSession, exc: BaseException) -> None:
    """Bring `session` back to a usable state after `exc` broke its transaction."""
    if interrupted(exc):
        await session.invalidate()
    else:
        await session.rollback()


def _cancelled_during_cleanup(failure: BaseException, exc: BaseException) -> bool:
    """A cancellation that arrived while cleaning up after another error must reach the task."""
    return isinstance(failure, asyncio.CancelledError) and not isinstance(exc, asyncio.CancelledError)
