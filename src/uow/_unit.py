"""The unit of work: one session, one block, nothing committed unless ``commit()`` is called."""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from sqlalchemy import Connection, Engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, SessionTransaction

from uow._classify import translate
from uow._errors import InvalidArgumentError, StateError, UncommittedWorkWarning
from uow._repository import ENDED_SESSION, AsyncRepository, CallGuard, Repository

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["AsyncUnitOfWork", "UnitOfWork"]

logger = logging.getLogger("uow")

T = TypeVar("T")
R = TypeVar("R", bound=Repository[Any])
AR = TypeVar("AR", bound=AsyncRepository[Any])

_FLUSHED = "uow.flushed_in"
_CONNECTIONS = "uow.connections"
_tracked_classes: set[type[Session]] = set()
_tracking_lock = threading.Lock()


def _record_flush(session: Session, flush_context: object) -> None:
    session.info[_FLUSHED] = session.get_transaction()


def _record_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    session.info.setdefault(_CONNECTIONS, {})[connection.engine] = connection


def instrument(session_class: type[Session]) -> None:
    """Make sessions of ``session_class`` remember their last flush and their connections.

    Listeners are registered once per session class (each ``sessionmaker`` makes its own), and
    record into ``session.info``: the transaction of the last flush, to tell whether uncommitted work
    reached the database, and the connection per engine, to give it back to the pool even when
    closing the session fails.
    """
    if session_class in _tracked_classes:
        return
    with _tracking_lock:
        if session_class not in _tracked_classes:
            event.listen(session_class, "after_flush", _record_flush)
            event.listen(session_class, "after_begin", _record_begin)
            _tracked_classes.add(session_class)


def discard_connections(session: Session) -> None:
    """Invalidate and close every connection ``session`` still holds; the pool gets them back."""
    connections: dict[Engine, Connection] = session.info.get(_CONNECTIONS, {})
    for connection in connections.values():
        if not connection.closed:
            try:
                connection.invalidate()
            finally:
                connection.close()


def uncommitted_work(session: Session) -> str | None:
    """Describe the work ``session`` holds that was neither committed nor rolled back, if any."""
    parts = [
        f"{count} {what} object(s)"
        for what, count in (
            ("new", len(session.new)),
            ("changed", len(session.dirty)),
            ("deleted", len(session.deleted)),
        )
        if count
    ]
    info = session.__dict__.get("info")
    if info is not None:
        flushed: SessionTransaction | None = info.get(_FLUSHED)
        if flushed is not None and flushed is session.get_transaction():
            parts.append("changes already flushed to the database")
    return ", ".join(parts) if parts else None


def interrupted(error: BaseException) -> bool:
    """Whether ``error`` may have cut a driver call short, leaving the connection in an unknown state.

    That is every ``BaseException`` that is not an ``Exception``: cancellation, ``KeyboardInterrupt``,
    ``SystemExit``. Such a connection is invalidated (closed; the server rolls back) instead of being
    asked to roll back.
    """
    return not isinstance(error, Exception)


def warn_uncommitted(discarded: str) -> None:
    warnings.warn(
        f"unit of work ended without commit(); rolled back {discarded}. "
        "Call unit.commit() to keep the work, or unit.rollback() to discard it explicitly.",
        UncommittedWorkWarning,
        stacklevel=3,
    )


def attach_failure(error: BaseException, failure: BaseException, during: str) -> None:
    """Record on ``error`` that ``failure`` happened while cleaning up after it; ``error`` wins."""
    error.add_note(f"uow: {during} after this error also failed: {failure!r}")
    logger.error("%s failed while handling %r", during, error, exc_info=failure)


def not_active(action: str) -> StateError:
    return StateError(
        f"{action} needs an active unit of work: call it inside 'with unit:' "
        "(a unit is active from entering its block until the block ends)"
    )


def already_active() -> StateError:
    return StateError(
        "this unit of work is already active: a unit runs one block at a time; "
        "create another UnitOfWork for independent work, or finish this block first"
    )


class _UnitCore:
    """State and rules shared by the sync and async units; only the I/O differs between them."""

    __slots__ = ("_factory", "_repositories", "_session")

    def __init__(self, session_factory: Callable[[], Any]) -> None:
        if not callable(session_factory):
            raise InvalidArgumentError(
                f"a unit of work needs a session factory such as sessionmaker(engine), "
                f"got {session_factory!r}"
            )
        self._factory = session_factory
        self._session: Any = None
        self._repositories: dict[Any, Any] = {}

    @property
    def active(self) -> bool:
        """Whether the unit is inside its block: between entering it and leaving it."""
        return self._session is not None

    def __repr__(self) -> str:
        state = "active" if self._session is not None else "idle"
        return f"<{type(self).__name__} {state}>"

    def _open(self, session_type: type[Any]) -> Any:
        if self._session is not None:
            raise already_active()
        session = self._factory()
        if not isinstance(session, session_type):
            raise InvalidArgumentError(
                f"the session factory of a {type(self).__name__} must return a "
                f"{session_type.__module__}.{session_type.__name__}, got {type(session).__name__}"
            )
        return session

    def _release(self) -> Any:
        session = self._session
        self._session = None
        if self._repositories:
            for repository in self._repositories.values():
                repository.session = ENDED_SESSION
            self._repositories = {}
        return session

    def _active(self, action: str) -> Any:
        session = self._session
        if session is None:
            raise not_active(action)
        return session

    def _repository(self, target: Any, base: type[Any], extra: dict[str, Any]) -> Any:
        repository = self._repositories.get(target)
        if repository is not None:
            return repository
        session = self._active("repository()")
        if isinstance(target, type) and issubclass(target, base):
            repository = target(session, **extra)
        else:
            repository = base(session, target, **extra)
        self._repositories[target] = repository
        return repository


class UnitOfWork(_UnitCore):
    """A block of work on one :class:`~sqlalchemy.orm.Session` that commits only when told to.

    ::

        with UnitOfWork(Session) as unit:
            unit.repository(User).add(User(id="7", name="hanmeimei"))
            unit.commit()

    Entering the block opens a session from ``session_factory``. Inside it:

    - :meth:`commit` flushes and commits; :meth:`rollback` discards pending changes and rolls back.
      Either way the unit stays usable and the next statement begins a new transaction.
    - Nothing is ever committed implicitly. Leaving the block rolls back whatever was not committed;
      if that was real work (new, changed or deleted objects, or a flush since the last commit or
      rollback), an :class:`~uow.UncommittedWorkWarning` says what was discarded.
    - An exception of any kind, ``KeyboardInterrupt`` included, rolls back and propagates unchanged;
      if the rollback fails too, that failure is attached to it as a note and logged. After an
      interruption that is not an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) the
      connection may have been cut off mid-statement, so it is invalidated instead: the driver closes
      it and the server rolls back.
    - On every exit path the session is closed and its connection is returned to the pool.

    A unit runs one block at a time and may be entered again after its block ended; each block gets
    a fresh session. A unit is not thread-safe: share the factory, not the unit.
    """

    __slots__ = ()

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        """Create a unit that opens its sessions with ``session_factory``.

        Args:
            session_factory: A :class:`~sqlalchemy.orm.sessionmaker`, or any callable taking no
                arguments that returns a new :class:`~sqlalchemy.orm.Session`.

        Raises:
            InvalidArgumentError: ``session_factory`` is not callable.
        """
        super().__init__(session_factory)

    def __enter__(self) -> Self:
        session: Session = self._open(Session)
        instrument(type(session))
        self._repositories = {}
        self._session = session
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session: Session | None = self._release()
        if session is None:
            return
        if exc is None:
            discarded = uncommitted_work(session)
            _end(session, None)
            if discarded is not None:
                warn_uncommitted(discarded)
            return
        try:
            _end(session, exc)
        except BaseException as failure:
            attach_failure(exc, failure, "rolling back and closing the session")

    @property
    def session(self) -> Session:
        """The live session of the active block: the way to everything the repositories don't cover.

        Raises:
            StateError: The unit is not active.
        """
        session: Session = self._active("unit.session")
        return session

    def commit(self) -> None:
        """Flush pending changes and commit the transaction.

        The unit stays active; the next statement begins a new transaction. If the commit fails, the
        unit rolls back (pending objects are discarded) and stays usable, and the error propagates:
        a primary-key or unique violation as :class:`~uow.DuplicateKeyError`, another integrity
        violation as :class:`~uow.IntegrityError`, anything else unchanged.

        Raises:
            StateError: The unit is not active.
        """
        session: Session = self._active("commit()")
        try:
            session.commit()
        except BaseException as exc:
            translated = translate(exc) if isinstance(exc, sa_exc.DBAPIError) else None
            try:
                _recover(session, exc)
            except BaseException as failure:
                attach_failure(translated or exc, failure, "rolling back the failed commit")
            if translated is not None:
                raise translated from exc
            raise

    def rollback(self) -> None:
        """Discard pending changes and roll back the transaction; the unit stays active.

        Objects added since the last commit are expunged; loaded objects are expired and reload on
        next access.

        Raises:
            StateError: The unit is not active.
        """
        session: Session = self._active("rollback()")
        session.rollback()

    @overload
    def repository(self, target: type[R]) -> R: ...
    @overload
    def repository(self, target: type[T]) -> Repository[T]: ...
    def repository(self, target: type[Any]) -> Repository[Any]:
        """The repository for ``target`` in this block, created on first use.

        ``target`` is a mapped class (giving a :class:`~uow.Repository` of it) or a subclass of
        :class:`~uow.Repository` (giving an instance of that subclass). Within one block the same
        ``target`` always gives the same instance.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: ``target`` is neither a mapped class nor a repository class.
        """
        repository: Repository[Any] = self._repository(target, Repository, {})
        return repository


def _end(session: Session, exc: BaseException | None) -> None:
    """Close ``session``, returning its connection to the pool whatever happens."""
    try:
        if exc is not None and interrupted(exc):
            session.invalidate()
        else:
            session.close()
    except BaseException:
        discard_connections(session)
        raise


def _recover(session: Session, exc: BaseException) -> None:
    """Bring ``session`` back to a usable state after ``exc`` broke its transaction."""
    if interrupted(exc):
        session.invalidate()
    else:
        session.rollback()


# -- async ------------------------------------------------------------------------------------------


async def _finish(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run ``cleanup`` to its end even if the calling task is cancelled meanwhile.

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


async def _end_async(session: AsyncSession, exc: BaseException | None) -> None:
    try:
        if exc is not None and interrupted(exc):
            await session.invalidate()
        else:
            await session.close()
    except BaseException:
        await session.run_sync(discard_connections)
        raise


async def _recover_async(session: AsyncSession, exc: BaseException) -> None:
    if interrupted(exc):
        await session.invalidate()
    else:
        await session.rollback()


class AsyncUnitOfWork(_UnitCore):
    """The async twin of :class:`UnitOfWork`, on an :class:`~sqlalchemy.ext.asyncio.AsyncSession`.

    ::

        async with AsyncUnitOfWork(async_session) as unit:
            await unit.repository(User).add(User(id="7", name="hanmeimei"))
            await unit.commit()

    It keeps every rule of :class:`UnitOfWork`: nothing is committed implicitly, leaving the block
    or an exception rolls back, the same warning, the same errors. In addition:

    - Cancellation (``asyncio.CancelledError``, including from ``asyncio.timeout``) anywhere in the
      block, during :meth:`commit` or during exit invalidates the connection (it may have been cut
      off mid-statement; the server rolls back) and the cleanup runs to its end before the
      cancellation propagates. The connection is always returned to the pool.
    - One call at a time: starting :meth:`commit`, :meth:`rollback` or a repository method while
      another one of the same unit is still running (``asyncio.gather`` over one unit) raises
      :class:`~uow.StateError`. Calls made one after another from different tasks are fine.
    """

    __slots__ = ("_expire_on_commit", "_guard")

    def __init__(
        self,
        session_factory: Callable[[], AsyncSession],
        *,
        expire_on_commit: bool | None = False,
    ) -> None:
        """Create a unit that opens its sessions with ``session_factory``.

        Args:
            session_factory: An :class:`~sqlalchemy.ext.asyncio.async_sessionmaker`, or any callable
                taking no arguments that returns a new :class:`~sqlalchemy.ext.asyncio.AsyncSession`.
            expire_on_commit: Whether :meth:`commit` expires the objects the session holds. The
                default, ``False``, keeps them loaded, so that reading an attribute after a commit
                never needs the implicit I/O that async code cannot do; ``True`` expires them as
                plain SQLAlchemy does (reload them with ``await unit.session.refresh(obj)``);
                ``None`` keeps whatever the factory's sessions are configured with.

        Raises:
            InvalidArgumentError: ``session_factory`` is not callable.
        """
        super().__init__(session_factory)
        self._guard = CallGuard()
        self._expire_on_commit = expire_on_commit

    async def __aenter__(self) -> Self:
        from sqlalchemy.ext.asyncio import AsyncSession

        session: AsyncSession = self._open(AsyncSession)
        sync_session = session.sync_session
        if self._expire_on_commit is not None:
            sync_session.expire_on_commit = self._expire_on_commit
        instrument(type(sync_session))
        self._repositories = {}
        self._guard = CallGuard()
        self._session = session
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session: AsyncSession | None = self._release()
        if session is None:
            return
        if exc is None:
            discarded = uncommitted_work(session.sync_session)
            await _finish(_end_async(session, None))
            if discarded is not None:
                warn_uncommitted(discarded)
            return
        try:
            await _finish(_end_async(session, exc))
        except BaseException as failure:
            if isinstance(failure, asyncio.CancelledError) and not isinstance(exc, asyncio.CancelledError):
                raise  # a cancellation that arrived during cleanup must reach the task
            attach_failure(exc, failure, "rolling back and closing the session")

    @property
    def session(self) -> AsyncSession:
        """The live async session of the active block.

        Raises:
            StateError: The unit is not active.
        """
        session: AsyncSession = self._active("unit.session")
        return session

    async def commit(self) -> None:
        """Flush pending changes and commit the transaction; see :meth:`UnitOfWork.commit`.

        If the commit is cancelled, whether it reached the database is unknown: the connection is
        invalidated and the cancellation propagates.

        Raises:
            StateError: The unit is not active, or another call of this unit is still running.
        """
        session: AsyncSession = self._active("commit()")
        guard = self._guard
        guard.enter("commit()")
        try:
            await session.commit()
        except BaseException as exc:
            translated = translate(exc) if isinstance(exc, sa_exc.DBAPIError) else None
            try:
                await _finish(_recover_async(session, exc))
            except BaseException as failure:
                if isinstance(failure, asyncio.CancelledError) and not isinstance(
                    exc, asyncio.CancelledError
                ):
                    raise
                attach_failure(translated or exc, failure, "rolling back the failed commit")
            if translated is not None:
                raise translated from exc
            raise
        finally:
            guard.running = None

    async def rollback(self) -> None:
        """Discard pending changes and roll back the transaction; the unit stays active.

        Raises:
            StateError: The unit is not active, or another call of this unit is still running.
        """
        session: AsyncSession = self._active("rollback()")
        guard = self._guard
        guard.enter("rollback()")
        try:
            await session.rollback()
        finally:
            guard.running = None

    @overload
    def repository(self, target: type[AR]) -> AR: ...
    @overload
    def repository(self, target: type[T]) -> AsyncRepository[T]: ...
    def repository(self, target: type[Any]) -> AsyncRepository[Any]:
        """The async repository for ``target`` in this block, created on first use.

        ``target`` is a mapped class (giving an :class:`~uow.AsyncRepository` of it) or a subclass of
        :class:`~uow.AsyncRepository`. Within one block the same ``target`` gives the same instance.

        Raises:
            StateError: The unit is not active.
            InvalidArgumentError: ``target`` is neither a mapped class nor a repository class.
        """
        repository: AsyncRepository[Any] = self._repository(target, AsyncRepository, {"_guard": self._guard})
        return repository
