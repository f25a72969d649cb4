"""The reference `User` model behind a Litestar application, one unit of work per request.

Run it (`pip install "uow[litestar,aiosqlite]" uvicorn`):

    uvicorn --factory uow.examples.web_litestar:create_app

`DATABASE_URL` names the database (default `sqlite+aiosqlite:///users.db`); a URL with a sync driver
gives the same routes as sync handlers, run in worker threads.

- `POST /users` with `{"id": "7", "name": "hanmeimei"}`: 201, committed before the response;
  an id that exists already: 409 (`application/problem+json`).
- `GET /users/7`: the user, or 404.
- `GET /users?name=hanmeimei&sort=-id&limit=10&offset=0`: a page of users.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody
from sqlalchemy import make_url

from uow.examples.users import Base, User
from uow.web import CommitMode, ErrorMap
from uow.web.litestar import AsyncDatabase, AsyncUnit, Database, Unit, UnitOfWorkPlugin, list_query

__all__ = ["NewUser", "UserOut", "create_app"]


@dataclass
class NewUser:
    id: str
    name: str | None = None


@dataclass
class UserOut:
    id: str
    name: str | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, name=user.name)


def create_app(
    database: Database | AsyncDatabase | None = None,
    *,
    commit: CommitMode = "explicit",
    errors: ErrorMap | None = None,
) -> Litestar:
    """The application on `database` (by default from `DATABASE_URL`), its tables created at startup.

    `commit` and `errors` go to the integration: the commit mode, and overrides of the problems.
    """
    if database is None:
        url = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///users.db")
        database = AsyncDatabase(url) if make_url(url).get_dialect().is_async else Database(url)

    @asynccontextmanager
    async def create_tables(app: Litestar) -> AsyncIterator[None]:  # runs after the plugin's lifespan
        if isinstance(database, AsyncDatabase):
            async with database.engine.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
        else:
            Base.metadata.create_all(database.engine)
        yield

    handlers = _async_handlers(commit) if isinstance(database, AsyncDatabase) else _sync_handlers(commit)
    return Litestar(
        handlers,
        plugins=[UnitOfWorkPlugin(database, commit=commit, errors=errors)],
        lifespan=[create_tables],
    )


def _async_handlers(commit: CommitMode) -> list[HTTPRouteHandler]:
    @post("/users")
    async def create_user(data: JSONBody[NewUser], unit: AsyncUnit) -> UserOut:
        user = await unit.repository(User).add(User(id=data.id, name=data.name))
        if commit == "explicit":
            await unit.commit()
        return UserOut.of(user)

    @get("/users/{user_id:str}")
    async def get_user(user_id: FromPath[str], unit: AsyncUnit) -> UserOut:
        return UserOut.of(await unit.repository(User).get_one(user_id))  # NotFoundError: 404

    @get("/users")
    async def list_users(request: Request[Any, Any, Any], unit: AsyncUnit) -> list[UserOut]:
        query = list_query(request, User, filterable=["id", "name"])
        return [UserOut.of(user) for user in await unit.repository(User).list(**query.arguments)]

    return [create_user, get_user, list_users]


def _sync_handlers(commit: CommitMode) -> list[HTTPRouteHandler]:
    @post("/users", sync_to_thread=True)
    def create_user(data: JSONBody[NewUser], unit: Unit) -> UserOut:
        user = unit.repository(User).add(User(id=data.id, name=data.name))
        if commit == "explicit":
            unit.commit()
        return UserOut.of(user)

    @get("/users/{user_id:str}", sync_to_thread=True)
    def get_user(user_id: FromPath[str], unit: Unit) -> UserOut:
        return UserOut.of(unit.repository(User).get_one(user_id))

    @get("/users", sync_to_thread=True)
    def list_users(request: Request[Any, Any, Any], unit: Unit) -> list[UserOut]:
        query = list_query(request, User, filterable=["id", "name"])
        return [UserOut.of(user) for user in unit.repository(User).list(**query.arguments)]

    return [create_user, get_user, list_users]
