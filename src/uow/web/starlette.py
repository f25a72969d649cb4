"""Starlette: a unit of work per request in `request.state.unit`, settled before the response starts.

Install with `pip install "uow[starlette]"`.

```python
from starlette.applications import Starlette
from starlette.middleware import Middleware

from uow.web.starlette import AsyncDatabase, UnitOfWorkMiddleware, async_unit_of

database = AsyncDatabase("postgresql+asyncpg://app@db/app")


async def create_user(request: Request) -> JSONResponse:
    unit = async_unit_of(request)  # or request.state.unit
    await unit.repository(User).add(User(**await request.json()))
    await unit.commit()
    return JSONResponse({...}, status_code=201)


app = Starlette(
    routes=[Route("/users", create_user, methods=["POST"])],
    middleware=[Middleware(UnitOfWorkMiddleware, database=database)],
    lifespan=database.lifespan,
)
```

See [`UnitOfWorkMiddleware`][uow.web.starlette.UnitOfWorkMiddleware] for what happens to the unit,
the "Web applications" guide for the whole picture.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request

from uow import AsyncUnitOfWork, StateError, UnitOfWork
from uow.web._asgi import UnitOfWorkMiddleware, request_unit
from uow.web._database import AsyncDatabase, Database
from uow.web._query import ListQuery, parse_list_query

__all__ = ["AsyncDatabase", "Database", "UnitOfWorkMiddleware", "async_unit_of", "list_query", "unit_of"]


def unit_of(request: Request, state_key: str = "unit") -> UnitOfWork:
    """The request's [`UnitOfWork`][uow.UnitOfWork], typed.

    Raises:
        StateError: The request has no unit (the middleware is missing) or an async one.
    """
    unit = request_unit(request.scope, state_key)
    if not isinstance(unit, UnitOfWork):
        raise StateError(
            "this request's unit of work is an AsyncUnitOfWork, from an AsyncDatabase: take it as "
            "AsyncUnit (FastAPI) or with async_unit_of(request), in an async handler"
        )
    return unit


def async_unit_of(request: Request, state_key: str = "unit") -> AsyncUnitOfWork:
    """The request's [`AsyncUnitOfWork`][uow.AsyncUnitOfWork], typed.

    Raises:
        StateError: The request has no unit (the middleware is missing) or a sync one.
    """
    unit = request_unit(request.scope, state_key)
    if not isinstance(unit, AsyncUnitOfWork):
        raise StateError(
            "this request's unit of work is a UnitOfWork, from a sync Database: take it as Unit "
            "(FastAPI) or with unit_of(request)"
        )
    return unit


def list_query(
    request: Request,
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

    ```python
    query = list_query(request, User, filterable=["name"])
    users = await unit.repository(User).list(**query.arguments)
    ```

    Raises:
        InvalidQueryError: A parameter is refused; the middleware answers 400.
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
