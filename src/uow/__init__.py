"""uow: an explicit unit of work and typed repositories for SQLAlchemy 2.x.

Nothing is committed unless ``commit()`` is called; leaving the block or an exception rolls back;
the session is always closed and its connection returned to the pool.
"""

from __future__ import annotations

from uow._async_unit import AsyncUnitOfWork
from uow._errors import (
    DuplicateKeyError,
    HookError,
    IntegrityError,
    InvalidArgumentError,
    InvalidFieldError,
    MultipleResultsError,
    NotFoundError,
    StateError,
    UncommittedWorkWarning,
    UnitOfWorkError,
)
from uow._events import HasEvents
from uow._repository import AsyncRepository, OrderBy, Repository
from uow._sqlite import configure_sqlite
from uow._unit import UnitOfWork

__all__ = [
    "AsyncRepository",
    "AsyncUnitOfWork",
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
    "StateError",
    "UncommittedWorkWarning",
    "UnitOfWork",
    "UnitOfWorkError",
    "configure_sqlite",
]

__version__ = "0.1.0.dev0"
