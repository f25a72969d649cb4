"""Web applications: a unit of work per request, committed before the response, errors as HTTP problems.

One module per framework, each behind its own extra, each importing its framework and nothing else
of the others; importing `uow` or `uow.web` imports no web framework:

| module | install | gives |
|---|---|---|
| [`uow.web.fastapi`][uow.web.fastapi] | `uow[fastapi]` | the dependencies `Unit` and `AsyncUnit` |
| [`uow.web.starlette`][uow.web.starlette] | `uow[starlette]` | `UnitOfWorkMiddleware`: `request.state.unit` |
| [`uow.web.litestar`][uow.web.litestar] | `uow[litestar]` | `UnitOfWorkPlugin`: the dependency `unit` |
| [`uow.web.flask`][uow.web.flask] | `uow[flask]` | `UnitOfWorkExtension`: `flask.g.unit` |

Every integration follows the same rules, kept here:

- A [`Database`][uow.web.Database] (or [`AsyncDatabase`][uow.web.AsyncDatabase]) makes its engine
  at the application's startup and disposes it at shutdown.
- Each request gets a unit of its own. In the default `commit="explicit"` mode nothing is
  committed unless the handler calls `unit.commit()`; `commit="on_success"` commits when the
  response status is 2xx or 3xx. Either way the unit is settled before the response is sent; an
  error status rolls back; a commit that fails there gives the client its problem, never a 2xx.
- uow's errors become RFC 9457 problems ([`Problems`][uow.web.Problems]): `NotFoundError` a 404,
  `DuplicateKeyError`, `IntegrityError` and a version conflict (`StaleDataError`) a 409,
  `TransientError` a 503 with `Retry-After`, `CommitOutcomeUnknownError` a 500 saying that the
  outcome is unknown.
- [`parse_list_query()`][uow.web.parse_list_query] turns query parameters into a repository's
  filters, sort order, limit and offset, checked against the fields the application allows.
"""

from __future__ import annotations

from uow.web._database import AsyncDatabase, Database
from uow.web._http import (
    PROBLEM_MEDIA_TYPE,
    PROBLEM_TYPES,
    CommitMode,
    ErrorMap,
    InvalidQueryError,
    Problem,
    Problems,
)
from uow.web._query import ListQuery, parse_list_query

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_TYPES",
    "AsyncDatabase",
    "CommitMode",
    "Database",
    "ErrorMap",
    "InvalidQueryError",
    "ListQuery",
    "Problem",
    "Problems",
    "parse_list_query",
]
