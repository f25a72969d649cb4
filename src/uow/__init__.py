"""uow: an explicit unit of work and typed repositories for SQLAlchemy 2.x.

Nothing is committed unless ``commit()`` is called; leaving the block or an exception rolls back;
the session is always closed and its connection returned to the pool.
"""

from __future__ import annotations

from uow._errors import (
    DuplicateKeyError,
    IntegrityError,
    InvalidArgumentError,
    InvalidFieldError,
    MultipleResultsError,
    NotFoundError,
    StateError,
    UncommittedWorkWarning,
    UnitOfWorkError,
)
from uow._repository import AsyncRepository, OrderBy, Repository
from uow._unit import AsyncUnitOfWork, UnitOfWork

__all__ = [
    "AsyncRepository",
    "AsyncUnitOfWork",
    "DuplicateKeyError",
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
]

__version__ = "0.1.0.dev0"
