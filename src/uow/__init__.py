"""uow: an explicit unit of work and typed repositories for SQLAlchemy 2.x.

Nothing is committed unless `commit()` is called; leaving the block or an exception rolls back;
the session is always closed and its connection returned to the pool.
"""

from __future__ import annotations

from uow._async_repository import AsyncRepository
from uow._async_unit import AsyncUnitOfWork
from uow._classify import is_transient
from uow._errors import (
    CommitOutcomeUnknownError,
    DuplicateKeyError,
    HookError,
    IntegrityError,
    InvalidArgumentError,
    InvalidFieldError,
    MultipleResultsError,
    NotFoundError,
    StateError,
    TransientError,
    UncommittedWorkWarning,
    UnitOfWorkError,
)
from uow._events import HasEvents
from uow._protocols import (
    AsyncRepositoryProtocol,
    AsyncUnitOfWorkProtocol,
    RepositoryProtocol,
    UnitOfWorkProtocol,
)
from uow._repository import OrderBy, Repository
from uow._retry import AsyncAttempt, AsyncAttempts, Attempt, Attempts, Retry
from uow._sqlite import configure_sqlite
from uow._unit import UnitOfWork

__all__ = [
    "AsyncAttempt",
    "AsyncAttempts",
    "AsyncRepository",
    "AsyncRepositoryProtocol",
    "AsyncUnitOfWork",
    "AsyncUnitOfWorkProtocol",
    "Attempt",
    "Attempts",
    "CommitOutcomeUnknownError",
    "DuplicateKeyError",
    "HasEvents",
    "HookError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidFieldError",
    "MultipleResultsError",
    "NotFoundError",
    "OrderBy",
    "Repository",
    "RepositoryProtocol",
    "Retry",
    "StateError",
    "TransientError",
    "UncommittedWorkWarning",
    "UnitOfWork",
    "UnitOfWorkError",
    "UnitOfWorkProtocol",
    "configure_sqlite",
    "is_transient",
]

__version__ = "0.1.0.dev0"
