"""The reference `User` model behind a FastAPI application, one unit of work per request.

Run it (`pip install "uow[fastapi,aiosqlite]" uvicorn`):

    uvicorn --factory uow.examples.web_fastapi:create_app

`DATABASE_URL` names the database (default `sqlite+aiosqlite:///users.db`); a URL with a sync driver
(`sqlite:///users.db`, `postgresql+psycopg://...`) gives the same routes as sync path operations.

- `POST /users` with `{"id": "7", "name": "hanmeimei"}`: 201, committed before the response;
  an id that exists already: 409 (`application/problem+json`).
- `GET /users/7`: the user, or 404.
- `GET /users?name=hanmeimei&sort=-id&limit=10&offset=0`: a page of users.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import make_url

from uow.examples.users import Base, User
from uow.web import CommitMode, ErrorMap, ListQuery
from uow.web.fastapi import AsyncDatabase, AsyncUnit, Database, Unit, UnitOfWorkMiddleware, list_query_of

__all__ = ["NewUser", "UserOut", "create_app"]


class NewUser(BaseModel):
    id: str = Field(min_length=1, max_length=20)
    name: str | None = Field(default=None, max_length=20)


class UserOut(BaseModel):
    id: str
    name: str | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, name=user.name)


UserQuery = Annotated[ListQuery, Depends(list_query_of(User, filterable=["id", "name"]))]


def create_app(
    database: Database | AsyncDatabase | None = None,
    *,
    commit: CommitMode = "explicit",
    errors: ErrorMap | None = None,
) -> FastAPI:
    """The application on `database` (by default from `DATABASE_URL`), its tables created at startup.

    `commit` and `errors` go to the integration: the commit mode, and overrides of the problems.
    """
    if database is None:
        url = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///users.db")
        database = AsyncDatabase(url) if make_url(url).get_dialect().is_async else Database(url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with database.lifespan(app):
            if isinstance(database, AsyncDatabase):
                async with database.engine.begin() as connection:
                    await connection.run_sync(Base.metadata.create_all)
            else:
                Base.metadata.create_all(database.engine)
            yield

    app = FastAPI(title="Users", lifespan=lifespan)
    app.add_middleware(UnitOfWorkMiddleware, database=database, commit=commit, errors=errors)
    if isinstance(database, AsyncDatabase):
        _async_routes(app, commit)
    else:
        _sync_routes(app, commit)
    return app


def _async_routes(app: FastAPI, commit: CommitMode) -> None:
    @app.post("/users", status_code=201)
    async def create_user(new: NewUser, unit: AsyncUnit) -> UserOut:
        user = await unit.repository(User).add(User(id=new.id, name=new.name))
        if commit == "explicit":
            await unit.commit()
        return UserOut.of(user)

    @app.get("/users/{user_id}")
    async def get_user(user_id: str, unit: AsyncUnit) -> UserOut:
        return UserOut.of(await unit.repository(User).get_one(user_id))  # NotFoundError: 404

    @app.get("/users")
    async def list_users(unit: AsyncUnit, query: UserQuery) -> list[UserOut]:
        return [UserOut.of(user) for user in await unit.repository(User).list(**query.arguments)]


def _sync_routes(app: FastAPI, commit: CommitMode) -> None:
    @app.post("/users", status_code=201)
    def create_user(new: NewUser, unit: Unit) -> UserOut:
        user = unit.repository(User).add(User(id=new.id, name=new.name))
        if commit == "explicit":
            unit.commit()
        return UserOut.of(user)

    @app.get("/users/{user_id}")
    def get_user(user_id: str, unit: Unit) -> UserOut:
        return UserOut.of(unit.repository(User).get_one(user_id))

    @app.get("/users")
    def list_users(unit: Unit, query: UserQuery) -> list[UserOut]:
        return [UserOut.of(user) for user in unit.repository(User).list(**query.arguments)]
