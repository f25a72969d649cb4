"""Test helpers for applications built on uow: fakes, a pytest plugin, and fault injection.

- `InMemoryUnitOfWork` and `AsyncInMemoryUnitOfWork` stand in for the real units in
  fast unit tests. They keep the real units' rules (explicit commit, rollback on exit, the same
  warning and errors, savepoints, hooks and domain events) on an `InMemoryStore` that units
  share. Their repositories,
  `InMemoryRepository` and `AsyncInMemoryRepository`, evaluate filters in Python and
  refuse, with `UnsupportedExpressionError`, any filter they cannot evaluate faithfully.
- The pytest plugin `uow` (loaded automatically once uow is installed; inert until its fixtures
  are used) gives integration tests session factories whose units commit into savepoints of an
  outer transaction that is rolled back after each test: `uow_session_factory` and
  `uow_async_session_factory`. `rolled_back_sessions()` and
  `rolled_back_async_sessions()` do the same anywhere.
- `fail_statement()` and `fail_commit()` make a statement or a commit fail with a chosen
  database error, on any backend, to test retry and error paths.

Application code that is annotated with [`uow.UnitOfWorkProtocol`][uow.UnitOfWorkProtocol] (or its async
twin) runs on
both the real and the in-memory units.
"""

from __future__ import annotations

from uow._evaluate import UnsupportedExpressionError
from uow._faults import Fault, FaultKind, fail_commit, fail_statement
from uow._memory_repository import AsyncInMemoryRepository, InMemoryRepository
from uow._memory_unit import AsyncInMemoryUnitOfWork, InMemoryUnitOfWork
from uow._rollback import rolled_back_async_sessions, rolled_back_sessions
from uow._store import InMemoryStore

__all__ = [
    "AsyncInMemoryRepository",
    "AsyncInMemoryUnitOfWork",
    "Fault",
    "FaultKind",
    "InMemoryRepository",
    "InMemoryStore",
    "InMemoryUnitOfWork",
    "UnsupportedExpressionError",
    "fail_commit",
    "fail_statement",
    "rolled_back_async_sessions",
    "rolled_back_sessions",
]
