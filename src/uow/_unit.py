"""The unit of work: one session, one block, nothing committed unless ``commit()`` is called."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, SessionTransaction

from uow._classify import translate
from uow._errors import InvalidArgumentError, StateError, UncommittedWorkWarning
from uow._repository import Repository

__all__ = ["UnitOfWork"]

logger = logging.getLogger("uow")

T = TypeVar("T")
R = TypeVar("R", bound=Repository[Any])

_FLUSHED = "uow.flushed_in"
_tracked_classes: set[type[Session]] = set()
_tracking_lock = threading.Lock()


def _record_flush(session: Session, flush_context: object) -> None:
    session.info[_FLUSHED] = session.get_transaction()


def track_flushes(session_class: type[Session]) -> None:
    """Make sessions of ``session_class`` remember the transaction of their last flush."""
    if session_class in _tracked_classes:
        return
    with _tracking_lock:
        if session_class not in _tracked_classes:
            event.listen(session_class, "after_flush", _record_flush)
            _tracked_classes.add(session_class)


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
      if the rollback fails too, that failure is attached to it as a note and logged.
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
        if self._session is not None:
            raise already_active()
        session = self._factory()
        if not isinstance(session, Session):
            raise InvalidArgumentError(
                f"the session factory of a UnitOfWork must return a sqlalchemy.orm.Session, "
                f"got {type(session).__name__}"
            )
        track_flushes(type(session))
        self._repositories = {}
        self._session = session
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session: Session | None = self._session
        if session is None:
            return
        self._session = None
        self._repositories = {}
        if exc is None:
            discarded = uncommitted_work(session)
            self._close(session)
            if discarded is not None:
                warnings.warn(
                    f"unit of work ended without commit(); rolled back {discarded}. "
                    "Call unit.commit() to keep the work, or unit.rollback() to discard it "
                    "explicitly.",
                    UncommittedWorkWarning,
                    stacklevel=2,
                )
            return
        try:
            self._close(session)
        except BaseException as failure:
            attach_failure(exc, failure, "rolling back and closing the session")

    @staticmethod
    def _close(session: Session) -> None:
        # close() rolls back an open transaction and returns the connection to the pool. If the
        # rollback fails, the connection is invalidated so that it is still given back.
        try:
            session.close()
        except BaseException:
            session.invalidate()
            raise

    @property
    def session(self) -> Session:
        """The live session of the active block: the way to everything the repositories do not cover.

        Raises:
            StateError: The unit is not active.
        """
        session: Session | None = self._session
        if session is None:
            raise not_active("unit.session")
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
        session: Session | None = self._session
        if session is None:
            raise not_active("commit()")
        try:
            session.commit()
        except BaseException as exc:
            try:
                session.rollback()
            except BaseException as failure:
                attach_failure(exc, failure, "rolling back the failed commit")
            if isinstance(exc, sa_exc.DBAPIError):
                translated = translate(exc)
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
        session: Session | None = self._session
        if session is None:
            raise not_active("rollback()")
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
        repository = self._repositories.get(target)
        if repository is not None:
            return repository  # type: ignore[no-any-return]  # the cache holds what was built below
        session: Session | None = self._session
        if session is None:
            raise not_active("repository()")
        if isinstance(target, type) and issubclass(target, Repository):
            repository = target(session)
        else:
            repository = Repository(session, target)
        self._repositories[target] = repository
        return repository
