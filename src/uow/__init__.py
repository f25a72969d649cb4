"""uow: an explicit unit of work and typed repositories for SQLAlchemy 2.x.

Nothing is committed unless `commit()` is called; leaving the block or an exception rolls back;
the session is always closed and its connection returned to the pool.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from uow._classify import is_transient
from uow._errors import (
    CommitOutcomeUnknownError,
    ConflictError,
    DuplicateKeyError,
    HookError,
    IntegrityError,
    InvalidArgumentError,
    InvalidFieldError,
    MultipleResultsError,
    NotFoundError,
    ReplicaWriteError,
    StateError,
    TransientError,
    UncommittedWorkWarning,
    UnitOfWorkError,
)
from uow._events import HasEvents
from uow._filters import ParsedQuery
from uow._locks import Lock
from uow._pages import Page, set_cursor_key
from uow._repository import OrderBy, Repository
from uow._sqlite import configure_sqlite
from uow._unit import UnitOfWork

if TYPE_CHECKING:
    from uow._async_repository import AsyncRepository
    from uow._async_routing import AsyncReplicaRouter
    from uow._async_unit import AsyncUnitOfWork
    from uow._base import AsyncAttempt, AsyncAttempts, Attempt, Attempts
    from uow._protocols import (
        AsyncRepositoryProtocol,
        AsyncUnitOfWorkProtocol,
        RepositoryProtocol,
        UnitOfWorkProtocol,
    )
    from uow._retry import Retry
    from uow._routing import RandomReplica, ReadYourWrites, ReplicaRouter, RoundRobin

# Loaded on first use, so that `import uow` costs little more than `import sqlalchemy.orm`.
_LAZY = {
    "AsyncAttempt": "uow._base",
    "AsyncAttempts": "uow._base",
    "AsyncRepository": "uow._async_repository",
    "AsyncReplicaRouter": "uow._async_routing",
    "AsyncRepositoryProtocol": "uow._protocols",
    "AsyncUnitOfWork": "uow._async_unit",
    "AsyncUnitOfWorkProtocol": "uow._protocols",
    "Attempt": "uow._base",
    "Attempts": "uow._base",
    "RandomReplica": "uow._routing",
    "ReadYourWrites": "uow._routing",
    "ReplicaRouter": "uow._routing",
    "RepositoryProtocol": "uow._protocols",
    "Retry": "uow._retry",
    "RoundRobin": "uow._routing",
    "UnitOfWorkProtocol": "uow._protocols",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'uow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "AsyncAttempt",
    "AsyncAttempts",
    "AsyncReplicaRouter",
    "AsyncRepository",
    "AsyncRepositoryProtocol",
    "AsyncUnitOfWork",
    "AsyncUnitOfWorkProtocol",
    "Attempt",
    "Attempts",
    "CommitOutcomeUnknownError",
    "ConflictError",
    "DuplicateKeyError",
    "HasEvents",
    "HookError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidFieldError",
    "Lock",
    "MultipleResultsError",
    "NotFoundError",
    "OrderBy",
    "Page",
    "ParsedQuery",
    "RandomReplica",
    "ReadYourWrites",
    "ReplicaRouter",
    "ReplicaWriteError",
    "Repository",
    "RepositoryProtocol",
    "Retry",
    "RoundRobin",
    "StateError",
    "TransientError",
    "UncommittedWorkWarning",
    "UnitOfWork",
    "UnitOfWorkError",
    "UnitOfWorkProtocol",
    "configure_sqlite",
    "is_transient",
    "set_cursor_key",
]

__version__ = "0.1.0.dev0"
