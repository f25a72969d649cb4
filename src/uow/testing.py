"""Test helpers for applications built on uow: fakes, a pytest plugin, and fault injection.

- `InMemoryUnitOfWork` and `AsyncInMemoryUnitOfWork` are the real units on an `InMemoryStore`:
  an in-memory SQLite database that the units given the same store share, for fast tests with no
  server. Their repositories, `InMemoryRepository` and `AsyncInMemoryRepository`, are the real
  `Repository` and `AsyncRepository`.
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

from uow._faults import Fault, FaultKind, fail_commit, fail_statement
from uow._memory import (
    AsyncInMemoryRepository,
    AsyncInMemoryUnitOfWork,
    InMemoryRepository,
    InMemoryStore,
    InMemoryUnitOfWork,
    UnsupportedSchemaError,
)
from uow._rollback import rolled_back_async_sessions, rolled_back_sessions

__all__ = [
    "AsyncInMemoryRepository",
    "AsyncInMemoryUnitOfWork",
    "Fault",
    "FaultKind",
    "InMemoryRepository",
    "InMemoryStore",
    "InMemoryUnitOfWork",
    "UnsupportedSchemaError",
    "fail_commit",
    "fail_statement",
    "rolled_back_async_sessions",
    "rolled_back_sessions",
]
