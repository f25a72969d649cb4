"""FastAPI: a unit of work per request as a dependency, settled before the response starts.

Install with `pip install "uow[fastapi]"`.

```python
from fastapi import FastAPI

from uow.web.fastapi import AsyncDatabase, AsyncUnit, UnitOfWorkMiddleware

database = AsyncDatabase("postgresql+asyncpg://app@db/app")
app = FastAPI(lifespan=database.lifespan)
app.add_middleware(UnitOfWorkMiddleware, database=database)


@app.post("/users", status_code=201)
async def create_user(new: NewUser, unit: AsyncUnit) -> UserOut:
    user = await unit.repository(User).add(User(id=new.id, name=new.name))
    await unit.commit()
    return UserOut(id=user.id, name=user.name)
```

`Unit` (sync path operations, with a [`Database`][uow.web.Database]) and `AsyncUnit` (async ones,
with an [`AsyncDatabase`][uow.web.AsyncDatabase]) give the request's unit. The unit is made and
settled by [`UnitOfWorkMiddleware`][uow.web.starlette.UnitOfWorkMiddleware], not by a dependency
with `yield`: the exit code of such a dependency runs after the response is sent (FastAPI's default
scope), or, with `Depends(..., scope="function")`, before the response but without knowing its
status. The middleware settles the unit as the response starts, knowing its status, so the commit
is done before the client hears of success, and a failed commit replaces the response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any

from fastapi import Depends, Request

from uow import AsyncUnitOfWork, UnitOfWork
from uow.web._asgi import UnitOfWorkMiddleware
from uow.web._database import AsyncDatabase, Database
from uow.web._query import ListQuery
from uow.web.starlette import async_unit_of, list_query, unit_of

__all__ = [
    "AsyncDatabase",
    "AsyncUnit",
    "Database",
    "Unit",
    "UnitOfWorkMiddleware",
    "get_async_unit",
    "get_unit",
    "list_query_of",
]


async def get_unit(request: Request) -> UnitOfWork:
    """The dependency behind `Unit`: the request's [`UnitOfWork`][uow.UnitOfWork].

    Raises:
        StateError: The middleware is missing, or gives async units.
    """
    return unit_of(request)


async def get_async_unit(request: Request) -> AsyncUnitOfWork:
    """The dependency behind `AsyncUnit`: the request's [`AsyncUnitOfWork`][uow.AsyncUnitOfWork].

    Raises:
        StateError: The middleware is missing, or gives sync units.
    """
    return async_unit_of(request)


Unit = Annotated[UnitOfWork, Depends(get_unit)]
"""The request's [`UnitOfWork`][uow.UnitOfWork], for path operations on a [`Database`][uow.web.Database]."""

AsyncUnit = Annotated[AsyncUnitOfWork, Depends(get_async_unit)]
"""The request's [`AsyncUnitOfWork`][uow.AsyncUnitOfWork], for path operations on an
[`AsyncDatabase`][uow.web.AsyncDatabase]."""


def list_query_of(
    model: type[Any],
    *,
    filterable: Iterable[str] | None = None,
    sortable: Iterable[str] | None = None,
    default_limit: int = 50,
    max_limit: int = 100,
    ignore: Iterable[str] = (),
) -> Callable[[Request], Awaitable[ListQuery]]:
    """A dependency reading the request's query parameters as arguments for `list()` on `model`.

    ```python
    UserQuery = Annotated[ListQuery, Depends(list_query_of(User, filterable=["name"]))]

    @app.get("/users")
    async def list_users(unit: AsyncUnit, query: UserQuery) -> list[UserOut]:
        return [UserOut(id=u.id, name=u.name) for u in await unit.repository(User).list(**query.arguments)]
    ```

    See [`parse_list_query()`][uow.web.parse_list_query] for the rules. A refused parameter raises
    [`InvalidQueryError`][uow.web.InvalidQueryError], which the middleware answers with a 400.
    The parameters are read from the request, so they do not appear in the OpenAPI schema.
    """

    async def dependency(request: Request) -> ListQuery:
        return list_query(
            request,
            model,
            filterable=filterable,
            sortable=sortable,
            default_limit=default_limit,
            max_limit=max_limit,
            ignore=ignore,
        )

    return dependency
