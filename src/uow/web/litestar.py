"""Litestar: a plugin that gives every request a unit of work by dependency injection.

Install with `pip install "uow[litestar]"`.

```python
from litestar import Litestar, post
from litestar.params import JSONBody

from uow.web.litestar import AsyncDatabase, AsyncUnit, UnitOfWorkPlugin

database = AsyncDatabase("postgresql+asyncpg://app@db/app")


@post("/users")
async def create_user(data: JSONBody[NewUser], unit: AsyncUnit) -> UserOut:
    user = await unit.repository(User).add(User(id=data.id, name=data.name))
    await unit.commit()
    return UserOut(id=user.id, name=user.name)


app = Litestar([create_user], plugins=[UnitOfWorkPlugin(database)])
```

The plugin adds to the application:

- the database's lifespan, before the application's own: the engine is made at startup and
  disposed at shutdown, after the application's own shutdown;
- [`UnitOfWorkMiddleware`][uow.web.starlette.UnitOfWorkMiddleware], after the application's own
  middleware (so closest to the handlers): it enters a unit per request and settles it as the
  response starts, before anything is sent; a commit that fails there replaces the response with
  its problem;
- the dependency `unit` (named by `dependency_key`): the request's unit, taken by a parameter of
  that name annotated `AsyncUnit` (or `Unit` for sync handlers on a `Database`);
- exception handlers that answer uow's errors with `application/problem+json` (404, 409, 503, 500,
  400; see [`Problems`][uow.web.Problems]), unless the application handles those classes itself.

Litestar answers a handler's exception inside the middleware, so the middleware sees its status
(4xx or 5xx) and rolls the unit back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from litestar import Request, Response
from litestar.config.app import AppConfig
from litestar.di import NamedDependency, Provide
from litestar.middleware import DefineMiddleware
from litestar.plugins import InitPlugin
from litestar.types import Scope

from uow import AsyncUnitOfWork, UnitOfWork
from uow.web._asgi import UnitOfWorkMiddleware, request_unit
from uow.web._database import AsyncDatabase, Database
from uow.web._http import PROBLEM_MEDIA_TYPE, CommitMode, ErrorMap, Problems, check_commit_mode
from uow.web._query import ListQuery, parse_list_query

__all__ = ["AsyncDatabase", "AsyncUnit", "Database", "Unit", "UnitOfWorkPlugin", "list_query"]

Unit = NamedDependency[UnitOfWork]
"""The request's [`UnitOfWork`][uow.UnitOfWork], for handlers on a [`Database`][uow.web.Database]:
`def create_user(data: JSONBody[NewUser], unit: Unit)`. The parameter's name is the plugin's
`dependency_key`."""

AsyncUnit = NamedDependency[AsyncUnitOfWork]
"""The request's [`AsyncUnitOfWork`][uow.AsyncUnitOfWork], for handlers on an
[`AsyncDatabase`][uow.web.AsyncDatabase]."""


class UnitOfWorkPlugin(InitPlugin):
    """A unit of work per request for a Litestar application, settled before the response starts."""

    __slots__ = ("commit", "database", "dependency_key", "errors", "problems", "retry_after")

    def __init__(
        self,
        database: Database | AsyncDatabase,
        *,
        commit: CommitMode = "explicit",
        errors: ErrorMap | None = None,
        retry_after: int = 1,
        dependency_key: str = "unit",
    ) -> None:
        """Configure the plugin.

        Args:
            database: Where the units come from; started and disposed by the application's lifespan.
            commit: `"explicit"` (only `unit.commit()` commits) or `"on_success"` (2xx and 3xx
                responses commit).
            errors: Overrides of the exception-to-problem mapping, see [`Problems`][uow.web.Problems].
            retry_after: Seconds in `Retry-After` after a transient failure.
            dependency_key: The name handlers take the unit by (`unit: AsyncUnitOfWork`).

        Raises:
            InvalidArgumentError: An option is invalid.
        """
        self.database: Database | AsyncDatabase = database
        self.commit: CommitMode = check_commit_mode(commit)
        self.errors: ErrorMap | None = errors
        self.retry_after: int = retry_after
        self.problems: Problems = Problems(errors, retry_after=retry_after)
        self.dependency_key: str = dependency_key

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the lifespan, the middleware, the dependency and the exception handlers."""
        app_config.lifespan.insert(0, self.database.lifespan)  # first in, last out: around the app's own
        app_config.middleware.append(
            DefineMiddleware(
                cast("Any", UnitOfWorkMiddleware),  # an ASGI app over plain mappings, as Litestar's are
                database=self.database,
                commit=self.commit,
                errors=self.errors,
                retry_after=self.retry_after,
                state_key=self.dependency_key,
            )
        )
        key = self.dependency_key

        async def provide_unit(scope: Scope) -> UnitOfWork | AsyncUnitOfWork:
            return request_unit(scope, key)

        app_config.dependencies[key] = Provide(provide_unit)
        for cls in self.problems.handled:
            app_config.exception_handlers.setdefault(cls, self._answer)
        app_config.signature_namespace.update(
            {
                "AsyncUnit": AsyncUnit,
                "AsyncUnitOfWork": AsyncUnitOfWork,
                "ListQuery": ListQuery,
                "Unit": Unit,
                "UnitOfWork": UnitOfWork,
            }
        )
        return app_config

    def _answer(self, request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
        problem = self.problems(error)
        if problem is None:  # pragma: no cover - only classes with a problem are registered
            raise error
        return Response(
            problem.content(),
            status_code=problem.status,
            media_type=PROBLEM_MEDIA_TYPE,
            headers=dict(problem.headers),
        )


def list_query(
    request: Request[Any, Any, Any],
    model: type[Any],
    *,
    filterable: Iterable[str] | None = None,
    sortable: Iterable[str] | None = None,
    default_limit: int = 50,
    max_limit: int = 100,
    ignore: Iterable[str] = (),
) -> ListQuery:
    """The request's query parameters as arguments for `list()`.

    See [`parse_list_query()`][uow.web.parse_list_query] for the rules.

    Raises:
        InvalidQueryError: A parameter is refused; the plugin answers 400.
    """
    return parse_list_query(
        model,
        request.query_params.multi_items(),
        filterable=filterable,
        sortable=sortable,
        default_limit=default_limit,
        max_limit=max_limit,
        ignore=ignore,
    )
