"""The reference `User` model behind a Starlette application, one unit of work per request.

Run it (`pip install "uow[starlette,aiosqlite]" uvicorn`):

    uvicorn --factory uow.examples.web_starlette:create_app

`DATABASE_URL` names the database (default `sqlite+aiosqlite:///users.db`); a URL with a sync driver
gives the same routes as sync endpoints, which Starlette runs in worker threads.

- `POST /users` with `{"id": "7", "name": "hanmeimei"}`: 201, committed before the response;
  an id that exists already: 409 (`application/problem+json`).
- `GET /users/7`: the user, or 404.
- `GET /users?name=hanmeimei&sort=-id&limit=10&offset=0`: a page of users.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import make_url
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from uow.examples.users import Base, User
from uow.web import CommitMode, ErrorMap
from uow.web.starlette import (
    AsyncDatabase,
    Database,
    UnitOfWorkMiddleware,
    async_unit_of,
    list_query,
    unit_of,
)

__all__ = ["create_app"]


def _json(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.name}


def _new_user(data: Any) -> User | None:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not 1 <= len(data["id"]) <= 20:
        return None
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 20):
        return None
    return User(id=data["id"], name=name)


def _invalid() -> JSONResponse:
    return JSONResponse({"detail": "id: 1 to 20 characters; name: at most 20"}, status_code=422)


def create_app(
    database: Database | AsyncDatabase | None = None,
    *,
    commit: CommitMode = "explicit",
    errors: ErrorMap | None = None,
) -> Starlette:
    """The application on `database` (by default from `DATABASE_URL`), its tables created at startup.

    `commit` and `errors` go to the integration: the commit mode, and overrides of the problems.
    """
    if database is None:
        url = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///users.db")
        database = AsyncDatabase(url) if make_url(url).get_dialect().is_async else Database(url)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with database.lifespan(app):
            if isinstance(database, AsyncDatabase):
                async with database.engine.begin() as connection:
                    await connection.run_sync(Base.metadata.create_all)
            else:
                Base.metadata.create_all(database.engine)
            yield

    routes = _async_routes(commit) if isinstance(database, AsyncDatabase) else _sync_routes(commit)
    return Starlette(
        routes=routes,
        middleware=[Middleware(UnitOfWorkMiddleware, database=database, commit=commit, errors=errors)],
        lifespan=lifespan,
    )


def _async_routes(commit: CommitMode) -> list[Route]:
    async def create_user(request: Request) -> JSONResponse:
        user = _new_user(await request.json())
        if user is None:
            return _invalid()
        unit = async_unit_of(request)
        await unit.repository(User).add(user)
        if commit == "explicit":
            await unit.commit()
        return JSONResponse(_json(user), status_code=201)

    async def get_user(request: Request) -> JSONResponse:
        user = await async_unit_of(request).repository(User).get_one(request.path_params["user_id"])
        return JSONResponse(_json(user))

    async def list_users(request: Request) -> JSONResponse:
        query = list_query(request, User, filterable=["id", "name"])
        users = await async_unit_of(request).repository(User).list(**query.arguments)
        return JSONResponse([_json(user) for user in users])

    return [
        Route("/users", create_user, methods=["POST"]),
        Route("/users", list_users, methods=["GET"]),
        Route("/users/{user_id}", get_user, methods=["GET"]),
    ]


def _sync_routes(commit: CommitMode) -> list[Route]:
    async def create_user(request: Request) -> JSONResponse:
        user = _new_user(await request.json())  # reading the body needs an async endpoint
        if user is None:
            return _invalid()
        unit = unit_of(request)

        def save() -> dict[str, Any]:
            unit.repository(User).add(user)
            if commit == "explicit":
                unit.commit()
            return _json(user)

        body = await run_in_threadpool(save)  # sync database work off the event loop
        return JSONResponse(body, status_code=201)

    def get_user(request: Request) -> JSONResponse:  # a sync endpoint: Starlette runs it in a thread
        return JSONResponse(_json(unit_of(request).repository(User).get_one(request.path_params["user_id"])))

    def list_users(request: Request) -> JSONResponse:
        query = list_query(request, User, filterable=["id", "name"])
        return JSONResponse(
            [_json(user) for user in unit_of(request).repository(User).list(**query.arguments)]
        )

    return [
        Route("/users", create_user, methods=["POST"]),
        Route("/users", list_users, methods=["GET"]),
        Route("/users/{user_id}", get_user, methods=["GET"]),
    ]
