"""What each integration adds of its own: imports, typed access, misuse, and what passes through."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask, g
from litestar import Litestar, Response, get
from litestar.params import FromPath
from litestar.testing import TestClient as LitestarClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient as StarletteClient
from starlette.websockets import WebSocket

import uow
from uow.examples.users import Base, User
from uow.web import AsyncDatabase, Database
from uow.web.fastapi import AsyncUnit, Unit
from uow.web.flask import UnitOfWorkExtension
from uow.web.litestar import AsyncUnit as LitestarAsyncUnit
from uow.web.litestar import UnitOfWorkPlugin
from uow.web.starlette import UnitOfWorkMiddleware, async_unit_of

FRAMEWORKS = {"fastapi", "starlette", "litestar", "flask"}


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite database file with the reference `user` table."""
    url = f"sqlite:///{tmp_path / 'web.db'}"
    database = Database(url)
    database.start()
    Base.metadata.create_all(database.engine)
    database.dispose()
    return url


WEB = Path(uow.__file__).parent / "web"
OWN_FRAMEWORKS = {
    "__init__": set(),
    "_asgi": set(),
    "_database": set(),
    "_http": set(),
    "_query": set(),
    "starlette": {"starlette"},
    "fastapi": {"fastapi"},  # and uow.web.starlette: FastAPI is Starlette
    "litestar": {"litestar"},
    "flask": {"flask"},
}


def frameworks_imported_by(path: Path) -> set[str]:
    """The web frameworks a module imports, anywhere in it (functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return FRAMEWORKS & names


def test_importing_uow_and_uow_web_imports_no_web_framework() -> None:
    code = "import sys, uow, uow.web; print(' '.join(sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert FRAMEWORKS & set(output.split()) == set()


def test_each_integration_imports_its_own_framework_only() -> None:
    modules = {path.stem: frameworks_imported_by(path) for path in sorted(WEB.glob("*.py"))}

    assert modules == OWN_FRAMEWORKS


# -- Starlette and FastAPI -----------------------------------------------------------------------


def test_a_streamed_body_still_reads_through_the_unit(url: str) -> None:
    async def stream(request: Request) -> StreamingResponse:
        unit = async_unit_of(request)

        async def body() -> AsyncIterator[bytes]:
            yield b"users: "
            yield str(await unit.repository(User).count()).encode()

        return StreamingResponse(body())

    database = AsyncDatabase(url.replace("sqlite://", "sqlite+aiosqlite://"))
    app = Starlette(
        routes=[Route("/", stream)],
        middleware=[Middleware(UnitOfWorkMiddleware, database=database)],
        lifespan=database.lifespan,
    )
    with StarletteClient(app) as client:
        assert client.get("/").text == "users: 0"


def test_a_websocket_passes_through_without_a_unit(url: str) -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"unit": "unit" in websocket.scope.get("state", {})})
        await websocket.close()

    database = Database(url)
    app = Starlette(
        routes=[WebSocketRoute("/ws", echo)],
        middleware=[Middleware(UnitOfWorkMiddleware, database=database)],
        lifespan=database.lifespan,
    )
    with StarletteClient(app) as client, client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"unit": False}


def test_the_unit_is_in_the_request_state_under_its_key(url: str) -> None:
    async def show(request: Request) -> JSONResponse:
        return JSONResponse({"same": request.state.db is async_unit_of(request, "db")})

    database = AsyncDatabase(url.replace("sqlite://", "sqlite+aiosqlite://"))
    app = Starlette(
        routes=[Route("/", show)],
        middleware=[Middleware(UnitOfWorkMiddleware, database=database, state_key="db")],
        lifespan=database.lifespan,
    )
    with StarletteClient(app) as client:
        assert client.get("/").json() == {"same": True}


def test_a_unit_without_the_middleware_is_refused_naming_it(url: str) -> None:
    app = FastAPI()

    @app.get("/")
    async def index(unit: AsyncUnit) -> None:
        raise AssertionError("never called")

    with TestClient(app) as client, pytest.raises(uow.StateError, match="add UnitOfWorkMiddleware"):
        client.get("/")


def test_a_sync_unit_asked_of_an_async_database_is_refused_naming_the_right_one(url: str) -> None:
    database = AsyncDatabase(url.replace("sqlite://", "sqlite+aiosqlite://"))
    app = FastAPI(lifespan=database.lifespan)
    app.add_middleware(UnitOfWorkMiddleware, database=database)

    @app.get("/")
    def index(unit: Unit) -> None:
        raise AssertionError("never called")

    with TestClient(app) as client, pytest.raises(uow.StateError, match="take it as AsyncUnit"):
        client.get("/")


def test_the_middleware_refuses_an_unknown_commit_mode(url: str) -> None:
    with pytest.raises(uow.InvalidArgumentError, match="on_success"):
        UnitOfWorkMiddleware(Starlette(), database=Database(url), commit="always")  # type: ignore[arg-type]


# -- Litestar --------------------------------------------------------------------------------------


def test_the_applications_own_exception_handler_wins_over_the_plugins(url: str) -> None:
    @get("/users/{user_id:str}")
    async def read(user_id: FromPath[str], unit: LitestarAsyncUnit) -> None:
        await unit.repository(User).get_one(user_id)

    def gone(request: object, error: uow.NotFoundError) -> Response[dict[str, str]]:
        return Response({"gone": error.model.__name__}, status_code=410)

    database = AsyncDatabase(url.replace("sqlite://", "sqlite+aiosqlite://"))
    app = Litestar([read], plugins=[UnitOfWorkPlugin(database)], exception_handlers={uow.NotFoundError: gone})
    with LitestarClient(app=app) as client:
        reply = client.get("/users/7")

    assert reply.status_code == 410
    assert reply.json() == {"gone": "User"}


# -- Flask -----------------------------------------------------------------------------------------


def test_the_flask_unit_is_in_g_under_its_key(url: str) -> None:
    database = Database(url)
    app = Flask(__name__)
    units = UnitOfWorkExtension(database, app, key="db")

    @app.get("/")
    def index() -> dict[str, bool]:
        return {"same": units.unit is g.db}

    try:
        assert app.test_client().get("/").json == {"same": True}
    finally:
        database.dispose()


def test_the_flask_unit_outside_a_request_is_refused(url: str) -> None:
    database = Database(url)
    units = UnitOfWorkExtension(database, Flask(__name__))
    try:
        with pytest.raises(uow.StateError, match="inside a request"):
            units.unit  # noqa: B018
    finally:
        database.dispose()


def test_the_flask_extension_refuses_an_async_database(url: str) -> None:
    with pytest.raises(uow.InvalidArgumentError, match="sync Database"):
        UnitOfWorkExtension(AsyncDatabase(url.replace("sqlite://", "sqlite+aiosqlite://")))  # type: ignore[arg-type]


# -- the database ----------------------------------------------------------------------------------


def test_the_engine_before_startup_is_refused_saying_how_to_start_it(url: str) -> None:
    with pytest.raises(uow.StateError, match=re.escape("lifespan=database.lifespan")):
        Database(url).engine  # noqa: B018


def test_a_database_is_started_once_at_a_time(url: str) -> None:
    database = Database(url)
    database.start()
    try:
        with pytest.raises(uow.StateError, match="started already"):
            database.start()
    finally:
        database.dispose()
    database.dispose()  # nothing happens
    assert not database.started


def test_a_sqlite_database_gets_atomic_savepoints(url: str) -> None:
    database = Database(url)
    database.start()
    try:
        with database.unit() as unit:
            unit.repository(User).add(User(id="1", name="kept"))
            with pytest.raises(RuntimeError), unit.savepoint():
                unit.repository(User).add(User(id="2", name="undone"))
                raise RuntimeError
            unit.commit()
            assert [user.id for user in unit.repository(User).list()] == ["1"]
    finally:
        database.dispose()


def test_a_malformed_url_is_refused(url: str) -> None:
    with pytest.raises(uow.InvalidArgumentError, match="cannot use database URL"):
        Database("not a url")
