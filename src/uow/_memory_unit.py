"""In-memory units of work: the real units' rules (states, hooks, events, savepoints) on a store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import Token
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar, overload

from uow._async_repository import AsyncRepository
from uow._core import _inside_savepoint as inside_savepoint
from uow._core import (
    already_active,
    attach_hook_failures,
    not_active,
    partial_commit,
    partial_savepoint,
    warn_uncommitted,
)
from uow._errors import InvalidArgumentError, StateError
from uow._events import drop_from, take_from
from uow._memory_repository import AsyncInMemoryRepository, InMemoryRepository, MemoryRepositoryCore, stand_in
from uow._memory_transaction import Savepoint, Transaction
from uow._repository import ENDED_SESSION, Repository
from uow._session import read_only_refusal
from uow._store import InMemoryStore
from uow._transaction import (
    Frame,
    Frames,
    Options,
    active_units,
    after_commit,
    after_commit_async,
    check_hook,
    hook_error,
    leave_unit,
    make_options,
    outside_unit,
    run_hooks,
    run_hooks_async,
)

__all__ = ["AsyncInMemoryUnitOfWork", "InMemoryUnitOfWork"]

T = TypeVar("T")
R = TypeVar("R", bound="Repository[Any] | InMemoryRepository[Any]")
AR = TypeVar("AR", bound="AsyncRepository[Any] | AsyncInMemoryRepository[Any]")


class _MemoryUnitCore:
    """State and rules shared by the sync and async in-memory units; the real units' rules, reused."""

    __slots__ = ("_depth", "_frames", "_options", "_repositories", "_store", "_transaction")

    def __init__(
        self,
        store: InMemoryStore | None,
        dispatch: Callable[[Any], Any] | None,
        read_only: bool,
        durable: bool,
        *,
        allow_async: bool,
    ) -> None:
        if store is not None and not isinstance(store, InMemoryStore):
            raise InvalidArgumentError(
                f"an in-memory unit of work takes an InMemoryStore (or nothing, for a new one), got {store!r}"
            )
        self._store = store if store is not None else InMemoryStore()
        self._options: Options = make_options(dispatch, None, read_only, durable, allow_async=allow_async)
        self._transaction: Transaction | None = None
        self._frames: Frames | None = None
        self._repositories: dict[Any, Any] = {}
        self._depth: Token[int] | None = None

    @property
    def store(self) -> InMemoryStore:
        """The store this unit commits to: share it between units, read it to check commits."""
        return self._store

    @property
    def active(self) -> bool:
        """Whether the unit is inside its block: between entering it and leaving it."""
        return self._transaction is not None

    @property
    def session(self) -> NoReturn:
        """In-memory units have no session: reading it raises `AttributeError`."""
        raise AttributeError(
            f"{type(self).__name__} has no session: code that needs unit.session needs a database "
            "(see the uow_session_factory fixture of the uow pytest plugin)"
        )

    def __repr__(self) -> str:
        state = "active" if self._transaction is not None else "idle"
        return f"<{type(self).__name__} {state}>"

    # -- the block ------------------------------------------------------------------------------

    def _begin(self) -> None:
        if self._transaction is not None:
            raise already_active()
        if self._options.durable and active_units.get():
            raise StateError(
                "a durable unit of work must be the outermost one, but another unit is active in "
                "this thread or task; run the durable work outside it (for example from an "
                "on_commit hook), or drop durable=True"
            )
        transaction = Transaction(self._store)
        transaction.read_only = self._options.read_only
        transaction.on_failure = self._statement_failed
        self._depth = active_units.set(active_units.get() + 1)
        self._repositories = {}
        self._frames = None
        self._transaction = transaction

    def _end(self, exc: BaseException | None) -> tuple[str | None, Frames | None]:
        """Close the block's transaction; what was discarded if it ended normally, and its frames."""
        transaction = self._transaction
        if transaction is None:
            return None, None
        self._drop_events(transaction)
        discarded = transaction.uncommitted() if exc is None else None
        frames = self._frames
        self._transaction = None
        self._frames = None
        for repository in self._repositories.values():
            repository._transaction = ENDED_SESSION
        self._repositories = {}
        leave_unit(self._depth)
        self._depth = None
        transaction.close()
        return discarded, frames

    def _active(self, action: str) -> Transaction:
        transaction = self._transaction
        if transaction is None:
            raise not_active(action)
        return transaction

    def _frames_of_block(self) -> Frames:
        frames = self._frames
        if frames is None:
            frames = self._frames = Frames()
        return frames

    def _statement_failed(self) -> None:
        self._frames_of_block().top.failed = True

    # -- rules, as the real units have them -----------------------------------------------------

    def _check_commit(self, transaction: Transaction) -> list[object] | None:
        frames = self._frames
        if frames is not None:
            if frames.in_savepoint:
                raise inside_savepoint("commit()")
            if frames.failed:
                raise partial_commit()
        if self._options.read_only and (transaction.new or transaction.deleted or transaction.dirty()):
            raise read_only_refusal("commit() with changes in the session was")
        if self._options.dispatch is None:
            return None
        return take_from(transaction.entities())

    def _check_rollback(self, transaction: Transaction) -> None:
        frames = self._frames
        if frames is not None and frames.in_savepoint:
            raise inside_savepoint("rollback()")
        self._drop_events(transaction)

    def _drop_events(self, transaction: Transaction, after: int = 0) -> None:
        if self._options.dispatch is not None:
            drop_from(transaction.entities(), after)

    def _end_transaction(self) -> Frame | None:
        frames = self._frames
        return frames.end() if frames is not None else None

    def _register(self, action: str, fn: Callable[[], Any], *, allow_async: bool) -> Frame:
        self._active(action)
        check_hook(fn, allow_async=allow_async)
        return self._frames_of_block().top

    def _repository(self, target: Any, memory_base: type[Any], real_base: type[Any]) -> Any:
        repository = self._repositories.get(target)
        if repository is not None:
            return repository
        transaction = self._active("repository()")
        if isinstance(target, type) and issubclass(target, MemoryRepositoryCore):
            repository = target(transaction)
        elif isinstance(target, type) and issubclass(target, real_base):
            repository = stand_in(target, memory_base, real_base)(transaction)
        else:
            repository = memory_base(transaction, target)
        self._repositories[target] = repository
        return repository


class InMemoryUnitOfWork(_MemoryUnitCore):
    """A [`UnitOfWork`][uow.UnitOfWork] whose database is an `InMemoryStore`: for fast unit tests.

    ```python
    store = InMemoryStore()
    with InMemoryUnitOfWork(store) as unit:
        unit.repository(User).add(User(id="7", name="hanmeimei"))
        unit.commit()
    assert [user.name for user in store.all(User)] == ["hanmeimei"]
    ```

    It keeps the real unit's rules: nothing is committed unless `commit()` is called; commit makes
    the changes visible to every unit sharing the store; `rollback()`, leaving the block without
    commit and any exception discard them, and leaving with uncommitted work issues the same
    [`UncommittedWorkWarning`][uow.UncommittedWorkWarning]. Misuse raises the same
    [`StateError`][uow.StateError]; a
    duplicate key raises [`DuplicateKeyError`][uow.DuplicateKeyError] and a missing NOT NULL value
    [`IntegrityError`][uow.IntegrityError] when they are flushed (at commit, or a read that flushes), after
    which the unit must be rolled back, as a real session must. Objects are copied into the store at
    flush and out of it on reads, so no change reaches another unit before it is committed.
    Savepoints, after-commit and after-rollback hooks, domain events, read-only and durable units
    follow the real unit's rules too.

    It has no `session`. `repository(UserRepository)` for a subclass of [`Repository`][uow.Repository]
    gives an in-memory repository that also has `UserRepository`'s own methods.
    """

    __slots__ = ()

    def __init__(
        self,
        store: InMemoryStore | None = None,
        *,
        dispatch: Callable[[Any], Any] | None = None,
        read_only: bool = False,
        durable: bool = False,
    ) -> None:
        """Create a unit that commits to `store`, or to a new store of its own.

        Args:
            store: The store to share with other units; a new one if not given.
            dispatch: Called with each domain event after a successful commit; see
                [`UnitOfWork`][uow.UnitOfWork].
            read_only: Refuse `commit()` and flushes while the unit holds changes.
            durable: Refuse to enter while another unit is active in the same thread or task.

        Raises:
            InvalidArgumentError: `store` is not an `InMemoryStore`, or an option is invalid.
        """
        super().__init__(store, dispatch, read_only, durable, allow_async=False)

    def __enter__(self) -> Self:
        self._begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        discarded, frames = self._end(exc)
        failures: list[Exception] = []
        if frames is not None:
            run_hooks(frames.end().on_rollback, failures, "after-rollback")
        if exc is not None:
            attach_hook_failures(exc, failures)
            return
        if discarded is not None:
            warn_uncommitted(discarded)
        if failures:
            raise hook_error(failures, committed=False)

    def commit(self) -> None:
        """Flush and apply this unit's changes to the store at once; see `uow.UnitOfWork.commit()`.

        Then the domain events are dispatched and the `on_commit()` hooks run.

        Raises:
            StateError: The unit is not active, or inside a savepoint block, or a statement failed
                earlier and its error was caught, or it is read-only and holds changes.
            DuplicateKeyError: A primary key or unique value exists already; nothing was committed.
            HookError: A hook or event handler failed; the data is committed.
        """
        transaction = self._active("commit()")
        events = self._check_commit(transaction)
        try:
            transaction.commit()
        except BaseException as exc:
            root = self._end_transaction()
            if root is not None and root.on_rollback:
                failures: list[Exception] = []
                with outside_unit():
                    run_hooks(root.on_rollback, failures, "after-rollback")
                attach_hook_failures(exc, failures)
            raise
        root = self._end_transaction()
        if events or (root is not None and root.on_commit):
            after_commit(self._options.dispatch, events, root)

    def rollback(self) -> None:
        """Discard uncommitted changes; objects read before show the committed values again.

        Raises:
            StateError: The unit is not active, or inside a savepoint block.
            HookError: An after-rollback hook failed (after all of them ran).
        """
        transaction = self._active("rollback()")
        self._check_rollback(transaction)
        transaction.rollback()
        root = self._end_transaction()
        if root is not None and root.on_rollback:
            failures: list[Exception] = []
            with outside_unit():
                run_hooks(root.on_rollback, failures, "after-rollback")
            if failures:
                raise hook_error(failures, committed=False)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an exception inside rolls back to the savepoint only.

        As `uow.UnitOfWork.savepoint()`: entering flushes; an exception rolls back the work done
        inside (objects added inside are let go, changed ones restored), drops its hooks and events
        and runs its `on_rollback()` hooks; a caught statement failure inside rolls it back and
        raises [`StateError`][uow.StateError] on leaving; a normal exit keeps its work in the unit.

        Raises:
            StateError: The unit is not active.
        """
        transaction = self._active("savepoint()")
        frames = self._frames_of_block()
        saved = transaction.savepoint()
        frame = frames.push()
        try:
            yield
        except BaseException as exc:
            self._leave_savepoint(transaction, saved, frames, frame, exc)
            raise
        if frame.failed:
            error = partial_savepoint()
            self._leave_savepoint(transaction, saved, frames, frame, error)
            raise error
        try:
            transaction.release(saved)
        except BaseException as exc:
            self._leave_savepoint(transaction, saved, frames, frame, exc)
            raise
        frames.release(frame)

    def _leave_savepoint(
        self, transaction: Transaction, saved: Savepoint, frames: Frames, frame: Frame, exc: BaseException
    ) -> None:
        frames.discard(frame)
        self._drop_events(transaction, frame.mark)
        transaction.rollback_to(saved)
        failures: list[Exception] = []
        with outside_unit():
            run_hooks(frame.on_rollback, failures, "after-rollback")
        attach_hook_failures(exc, failures)

    def on_commit(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        """Run `fn()` once the current transaction has committed; see `uow.UnitOfWork.on_commit()`.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: `fn` is not callable, or is a coroutine function.
        """
        self._register("on_commit()", fn, allow_async=False).on_commit.append((fn, robust))

    def on_rollback(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        """Run `fn()` when the current transaction or savepoint rolls back; see
        `uow.UnitOfWork.on_rollback()`.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: `fn` is not callable, or is a coroutine function.
        """
        self._register("on_rollback()", fn, allow_async=False).on_rollback.append((fn, robust))

    @overload
    def repository(self, target: type[R]) -> R: ...  # type: ignore[overload-overlap]  # a mapped class is no repository
    @overload
    def repository(self, target: type[T]) -> InMemoryRepository[T]: ...
    def repository(self, target: type[Any]) -> Any:
        """The in-memory repository for `target` in this block, created on first use.

        `target` is a mapped class, a subclass of `InMemoryRepository`, or a subclass of
        [`Repository`][uow.Repository] (whose own methods then run on the in-memory repository; it may not
        override the repository's methods). Within one block the same `target` gives the same
        instance.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: `target` is none of these.
        """
        return self._repository(target, InMemoryRepository, Repository)


class AsyncInMemoryUnitOfWork(_MemoryUnitCore):
    """The async twin of `InMemoryUnitOfWork`, standing in for [`AsyncUnitOfWork`][uow.AsyncUnitOfWork].

    Hooks and the dispatcher may be coroutine functions, as on [`AsyncUnitOfWork`][uow.AsyncUnitOfWork].
    """

    __slots__ = ()

    def __init__(
        self,
        store: InMemoryStore | None = None,
        *,
        dispatch: Callable[[Any], Any] | None = None,
        read_only: bool = False,
        durable: bool = False,
    ) -> None:
        """Create a unit that commits to `store`, or to a new store of its own.

        Raises:
            InvalidArgumentError: `store` is not an `InMemoryStore`, or an option is invalid.
        """
        super().__init__(store, dispatch, read_only, durable, allow_async=True)

    async def __aenter__(self) -> Self:
        self._begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        discarded, frames = self._end(exc)
        failures: list[Exception] = []
        if frames is not None:
            await run_hooks_async(frames.end().on_rollback, failures, "after-rollback")
        if exc is not None:
            attach_hook_failures(exc, failures)
            return
        if discarded is not None:
            warn_uncommitted(discarded)
        if failures:
            raise hook_error(failures, committed=False)

    async def commit(self) -> None:
        """Flush and apply this unit's changes to the store at once; see `InMemoryUnitOfWork.commit()`."""
        transaction = self._active("commit()")
        events = self._check_commit(transaction)
        try:
            transaction.commit()
        except BaseException as exc:
            root = self._end_transaction()
            if root is not None and root.on_rollback:
                failures: list[Exception] = []
                with outside_unit():
                    await run_hooks_async(root.on_rollback, failures, "after-rollback")
                attach_hook_failures(exc, failures)
            raise
        root = self._end_transaction()
        if events or (root is not None and root.on_commit):
            await after_commit_async(self._options.dispatch, events, root)

    async def rollback(self) -> None:
        """Discard uncommitted changes; see `InMemoryUnitOfWork.rollback()`."""
        transaction = self._active("rollback()")
        self._check_rollback(transaction)
        transaction.rollback()
        root = self._end_transaction()
        if root is not None and root.on_rollback:
            failures: list[Exception] = []
            with outside_unit():
                await run_hooks_async(root.on_rollback, failures, "after-rollback")
            if failures:
                raise hook_error(failures, committed=False)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction (`async with unit.savepoint():`); see InMemoryUnitOfWork.savepoint."""
        transaction = self._active("savepoint()")
        frames = self._frames_of_block()
        saved = transaction.savepoint()
        frame = frames.push()
        try:
            yield
        except BaseException as exc:
            await self._leave_savepoint(transaction, saved, frames, frame, exc)
            raise
        if frame.failed:
            error = partial_savepoint()
            await self._leave_savepoint(transaction, saved, frames, frame, error)
            raise error
        try:
            transaction.release(saved)
        except BaseException as exc:
            await self._leave_savepoint(transaction, saved, frames, frame, exc)
            raise
        frames.release(frame)

    async def _leave_savepoint(
        self, transaction: Transaction, saved: Savepoint, frames: Frames, frame: Frame, exc: BaseException
    ) -> None:
        frames.discard(frame)
        self._drop_events(transaction, frame.mark)
        transaction.rollback_to(saved)
        failures: list[Exception] = []
        with outside_unit():
            await run_hooks_async(frame.on_rollback, failures, "after-rollback")
        attach_hook_failures(exc, failures)

    def on_commit(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        """Run `fn()` (awaited if it is a coroutine function) after the commit."""
        self._register("on_commit()", fn, allow_async=True).on_commit.append((fn, robust))

    def on_rollback(self, fn: Callable[[], object], *, robust: bool = False) -> None:
        """Run `fn()` (awaited if it is a coroutine function) when the work rolls back."""
        self._register("on_rollback()", fn, allow_async=True).on_rollback.append((fn, robust))

    @overload
    def repository(self, target: type[AR]) -> AR: ...  # type: ignore[overload-overlap]  # a mapped class is no repository
    @overload
    def repository(self, target: type[T]) -> AsyncInMemoryRepository[T]: ...
    def repository(self, target: type[Any]) -> Any:
        """The async in-memory repository for `target`; see `InMemoryUnitOfWork.repository()`."""
        return self._repository(target, AsyncInMemoryRepository, AsyncRepository)
