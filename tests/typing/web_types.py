"""Checked by ``mypy --strict`` in CI: what the web integrations' types tell an IDE and a type checker."""

from __future__ import annotations

from typing import Any, assert_type

from fastapi import FastAPI
from flask import Flask
from litestar import Litestar
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request

from tests.models import User
from uow import AsyncUnitOfWork, NotFoundError, UnitOfWork
from uow.web import AsyncDatabase, Database, ListQuery, Problem, Problems, parse_list_query
from uow.web.fastapi import UnitOfWorkMiddleware, list_query_of
from uow.web.flask import UnitOfWorkExtension
from uow.web.litestar import UnitOfWorkPlugin
from uow.web.starlette import async_unit_of, list_query, unit_of


def gone(error: NotFoundError) -> Problem:
    return Problem(410, detail=f"{error.model.__name__} is gone")


def databases() -> None:
    database = Database("sqlite://")
    assert_type(database.engine, Engine)
    assert_type(database.unit(), UnitOfWork)
    async_database = AsyncDatabase("sqlite+aiosqlite://")
    assert_type(async_database.engine, AsyncEngine)
    assert_type(async_database.unit(), AsyncUnitOfWork)


def applications(database: Database, async_database: AsyncDatabase) -> None:
    app = FastAPI(lifespan=async_database.lifespan)
    app.add_middleware(UnitOfWorkMiddleware, database=async_database, commit="on_success")
    Starlette(
        middleware=[Middleware(UnitOfWorkMiddleware, database=database, errors={NotFoundError: gone})],
        lifespan=database.lifespan,
    )
    Litestar([], plugins=[UnitOfWorkPlugin(async_database, commit="explicit")])
    UnitOfWorkExtension(database, Flask(__name__), retry_after=5)


def requests(request: Request) -> None:
    assert_type(unit_of(request), UnitOfWork)
    assert_type(async_unit_of(request), AsyncUnitOfWork)
    query = list_query(request, User, filterable=["name"])
    assert_type(query, ListQuery)
    assert_type(query.arguments, dict[str, Any])
    assert_type(parse_list_query(User, [("name", "ann")]), ListQuery)
    assert_type(Problems()(ValueError()), Problem | None)
    list_query_of(User)
