"""Each framework's example application on a test backend, driven through the framework's own test client.

`serve()` builds the example application of one framework and flavour on a backend, adds the routes
that only the specifications need (`/drafts/...`), and wraps it in an observer placed outside
everything else (an ASGI wrapper, or a WSGI wrapper around Flask's `wsgi_app`). The observer reads
the committed rows of the `user` table through the backend's own connection at the moment the
response starts, before its first byte goes out: a commit made later is not seen there.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient as FastAPIClient
from litestar import Response, post
from litestar.params import FromPath
from litestar.testing import TestClient as LitestarClient
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient as StarletteClient

from tests.conftest import Backend
from uow import AsyncUnitOfWork, UnitOfWork
from uow.examples import web_fastapi, web_flask, web_litestar, web_starlette
from uow.examples.users import User
from uow.web import AsyncDatabase, CommitMode, Database, ErrorMap
from uow.web.fastapi import AsyncUnit as FastAPIAsyncUnit
from uow.web.fastapi import Unit as FastAPIUnit
from uow.web.litestar import AsyncUnit as LitestarAsyncUnit
from uow.web.litestar import Unit as LitestarUnit
from uow.web.starlette import async_unit_of, unit_of

FRAMEWORKS = [
    "fastapi-async",
    "fastapi-sync",
    "starlette-async",
    "starlette-sync",
    "litestar-async",
    "litestar-sync",
    "flask",
]
"""Every integration, in each flavour the framework has."""


class HandlerFailed(Exception):
    """What the `/drafts/{id}/failing` route raises after adding a user."""


@dataclass
class Reply:
    """A response, whichever client produced it."""

    status: int
    headers: Mapping[str, str]
    body: Any
    warnings: list[type[Warning]] = field(default_factory=list)
    """The categories of the warnings issued while the request was served."""

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


class Gate:
    """Holds each request that arrives until `parties` of them are inside their handlers at once."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self._lock = threading.Lock()
        self.write_lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None
        self.reset()

    def reset(self) -> None:
        """Open the gate again, for requests that have not arrived yet."""
        self.units: list[UnitOfWork | AsyncUnitOfWork] = []
        self._all_in = threading.Event()

    def _arrive(self, unit: UnitOfWork | AsyncUnitOfWork) -> None:
        with self._lock:
            self.units.append(unit)
            if len(self.units) == self.parties:
                self._all_in.set()

    def arrive(self, unit: UnitOfWork) -> None:
        self._arrive(unit)
        assert self._all_in.wait(10), "the other request never arrived"

    async def arrive_async(self, unit: AsyncUnitOfWork) -> None:
        self._arrive(unit)
        deadline = time.monotonic() + 10
        while not self._all_in.is_set():
            assert time.monotonic() < deadline, "the other request never arrived"
            await asyncio.sleep(0.002)

    @property
    def async_write_lock(self) -> asyncio.Lock:
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        return self._async_lock


# -- the routes only the specifications need ----------------------------------------------------
# POST /drafts/{id}          adds a user, never commits, answers 201
# POST /drafts/{id}/refused  adds a user, answers 409 itself (no exception)
# POST /drafts/{id}/failing  adds a user, raises HandlerFailed
# POST /drafts/{id}/waiting  waits until two requests are in, then adds a user and commits


def _draft(unit: UnitOfWork, user_id: str) -> None:
    unit.repository(User).add(User(id=user_id, name="draft"))


async def _draft_async(unit: AsyncUnitOfWork, user_id: str) -> None:
    await unit.repository(User).add(User(id=user_id, name="draft"))


def _wait_and_commit(unit: UnitOfWork, user_id: str, gate: Gate) -> None:
    gate.arrive(unit)
    with gate.write_lock:  # the units are separate; the writes are serialized for SQLite's sake
        _draft(unit, user_id)
        unit.commit()


async def _wait_and_commit_async(unit: AsyncUnitOfWork, user_id: str, gate: Gate) -> None:
    await gate.arrive_async(unit)
    async with gate.async_write_lock:
        await _draft_async(unit, user_id)
        await unit.commit()


REFUSED = {"detail": "refused by the handler"}


def _fastapi_routes(app: Any, asynchronous: bool, gate: Gate) -> None:
    if asynchronous:

        @app.post("/drafts/{user_id}", status_code=201)
        async def draft(user_id: str, unit: FastAPIAsyncUnit) -> dict[str, str]:
            await _draft_async(unit, user_id)
            return {"id": user_id}

        @app.post("/drafts/{user_id}/refused")
        async def refused(user_id: str, unit: FastAPIAsyncUnit) -> JSONResponse:
            await _draft_async(unit, user_id)
            return JSONResponse(REFUSED, status_code=409)

        @app.post("/drafts/{user_id}/failing")
        async def failing(user_id: str, unit: FastAPIAsyncUnit) -> None:
            await _draft_async(unit, user_id)
            raise HandlerFailed

        @app.post("/drafts/{user_id}/waiting", status_code=201)
        async def waiting(user_id: str, unit: FastAPIAsyncUnit) -> dict[str, str]:
            await _wait_and_commit_async(unit, user_id, gate)
            return {"id": user_id}

    else:

        @app.post("/drafts/{user_id}", status_code=201)
        def draft_sync(user_id: str, unit: FastAPIUnit) -> dict[str, str]:
            _draft(unit, user_id)
            return {"id": user_id}

        @app.post("/drafts/{user_id}/refused")
        def refused_sync(user_id: str, unit: FastAPIUnit) -> JSONResponse:
            _draft(unit, user_id)
            return JSONResponse(REFUSED, status_code=409)

        @app.post("/drafts/{user_id}/failing")
        def failing_sync(user_id: str, unit: FastAPIUnit) -> None:
            _draft(unit, user_id)
            raise HandlerFailed

        @app.post("/drafts/{user_id}/waiting", status_code=201)
        def waiting_sync(user_id: str, unit: FastAPIUnit) -> dict[str, str]:
            _wait_and_commit(unit, user_id, gate)
            return {"id": user_id}


def _starlette_routes(app: Any, asynchronous: bool, gate: Gate) -> None:
    if asynchronous:

        async def draft(request: Request) -> JSONResponse:
            user_id = request.path_params["user_id"]
            await _draft_async(async_unit_of(request), user_id)
            return JSONResponse({"id": user_id}, status_code=201)

        async def refused(request: Request) -> JSONResponse:
            await _draft_async(async_unit_of(request), request.path_params["user_id"])
            return JSONResponse(REFUSED, status_code=409)

        async def failing(request: Request) -> JSONResponse:
            await _draft_async(async_unit_of(request), request.path_params["user_id"])
            raise HandlerFailed

        async def waiting(request: Request) -> JSONResponse:
            user_id = request.path_params["user_id"]
            await _wait_and_commit_async(async_unit_of(request), user_id, gate)
            return JSONResponse({"id": user_id}, status_code=201)

    else:

        def draft(request: Request) -> JSONResponse:  # type: ignore[misc]  # sync endpoints, run in threads
            user_id = request.path_params["user_id"]
            _draft(unit_of(request), user_id)
            return JSONResponse({"id": user_id}, status_code=201)

        def refused(request: Request) -> JSONResponse:  # type: ignore[misc]
            _draft(unit_of(request), request.path_params["user_id"])
            return JSONResponse(REFUSED, status_code=409)

        def failing(request: Request) -> JSONResponse:  # type: ignore[misc]
            _draft(unit_of(request), request.path_params["user_id"])
            raise HandlerFailed

        def waiting(request: Request) -> JSONResponse:  # type: ignore[misc]
            user_id = request.path_params["user_id"]
            _wait_and_commit(unit_of(request), user_id, gate)
            return JSONResponse({"id": user_id}, status_code=201)

    app.add_route("/drafts/{user_id}", draft, methods=["POST"])
    app.add_route("/drafts/{user_id}/refused", refused, methods=["POST"])
    app.add_route("/drafts/{user_id}/failing", failing, methods=["POST"])
    app.add_route("/drafts/{user_id}/waiting", waiting, methods=["POST"])


def _litestar_routes(app: Any, asynchronous: bool, gate: Gate) -> None:
    if asynchronous:

        @post("/drafts/{user_id:str}")
        async def draft(user_id: FromPath[str], unit: LitestarAsyncUnit) -> dict[str, str]:
            await _draft_async(unit, user_id)
            return {"id": user_id}

        @post("/drafts/{user_id:str}/refused")
        async def refused(user_id: FromPath[str], unit: LitestarAsyncUnit) -> Response[dict[str, str]]:
            await _draft_async(unit, user_id)
            return Response(REFUSED, status_code=409)

        @post("/drafts/{user_id:str}/failing")
        async def failing(user_id: FromPath[str], unit: LitestarAsyncUnit) -> None:
            await _draft_async(unit, user_id)
            raise HandlerFailed

        @post("/drafts/{user_id:str}/waiting")
        async def waiting(user_id: FromPath[str], unit: LitestarAsyncUnit) -> dict[str, str]:
            await _wait_and_commit_async(unit, user_id, gate)
            return {"id": user_id}

        handlers = [draft, refused, failing, waiting]
    else:

        @post("/drafts/{user_id:str}", sync_to_thread=True)
        def draft_sync(user_id: FromPath[str], unit: LitestarUnit) -> dict[str, str]:
            _draft(unit, user_id)
            return {"id": user_id}

        @post("/drafts/{user_id:str}/refused", sync_to_thread=True)
        def refused_sync(user_id: FromPath[str], unit: LitestarUnit) -> Response[dict[str, str]]:
            _draft(unit, user_id)
            return Response(REFUSED, status_code=409)

        @post("/drafts/{user_id:str}/failing", sync_to_thread=True)
        def failing_sync(user_id: FromPath[str], unit: LitestarUnit) -> None:
            _draft(unit, user_id)
            raise HandlerFailed

        @post("/drafts/{user_id:str}/waiting", sync_to_thread=True)
        def waiting_sync(user_id: FromPath[str], unit: LitestarUnit) -> dict[str, str]:
            _wait_and_commit(unit, user_id, gate)
            return {"id": user_id}

        handlers = [draft_sync, refused_sync, failing_sync, waiting_sync]
    for handler in handlers:
        app.register(handler)


def _flask_routes(app: Any, units: Any, gate: Gate) -> None:
    @app.post("/drafts/<user_id>")
    def draft(user_id: str) -> tuple[dict[str, str], int]:
        _draft(units.unit, user_id)
        return {"id": user_id}, 201

    @app.post("/drafts/<user_id>/refused")
    def refused(user_id: str) -> tuple[dict[str, str], int]:
        _draft(units.unit, user_id)
        return REFUSED, 409

    @app.post("/drafts/<user_id>/failing")
    def failing(user_id: str) -> None:
        _draft(units.unit, user_id)
        raise HandlerFailed

    @app.post("/drafts/<user_id>/waiting")
    def waiting(user_id: str) -> tuple[dict[str, str], int]:
        _wait_and_commit(units.unit, user_id, gate)
        return {"id": user_id}, 201


# -- observers: the committed rows at the moment each response starts ---------------------------


def _observe_asgi(app: Any, seen: Callable[[], None]) -> Any:
    async def observed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def observe(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen()
            await send(message)

        await app(scope, receive, observe)

    return observed


def _observe_wsgi(wsgi_app: Any, seen: Callable[[], None]) -> Any:
    def observed(environ: Any, start_response: Any) -> Any:
        def observe(status: str, headers: Any, exc_info: Any = None) -> Any:
            seen()
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, observe)

    return observed


# -- serving --------------------------------------------------------------------------------------


class Served:
    """One framework's example application, started on a backend, and its test client."""

    def __init__(
        self,
        framework: str,
        backend: Backend,
        commit: CommitMode,
        *,
        errors: ErrorMap | None = None,
        start: bool = True,
    ) -> None:
        """Build the application; with `start`, also start it (for ASGI, run its lifespan's startup)."""
        self.framework = framework
        self.backend = backend
        self.commit = commit
        self.gate = Gate(2)
        self.seen: list[list[tuple[str, str | None]]] = []
        """The committed rows, as each response started."""
        self.observing = True
        asynchronous = framework.endswith("-async")
        self.database: Database | AsyncDatabase = (
            AsyncDatabase(backend.async_url, engine_options=backend.async_engine_options)
            if asynchronous
            else Database(backend.url, engine_options=backend.engine_options)
        )
        self._client: Any = None
        self.started = False
        if framework == "flask":
            self._serve_flask(errors)
        else:
            self._serve_asgi(asynchronous, errors)
        if start:
            self.start()

    def start(self) -> None:
        """Start the application: for ASGI, its lifespan's startup (Flask's starts as it is built)."""
        if self._client is not None:
            self._client.__enter__()
        self.started = True

    def reset(self) -> None:
        """Forget what earlier requests saw, for the next test on the same application."""
        self.seen = []
        self.observing = True
        self.gate.reset()

    def _see(self) -> None:
        if self.observing:
            self.seen.append(self.backend.users())

    def _serve_asgi(self, asynchronous: bool, errors: ErrorMap | None) -> None:
        kind = self.framework.split("-")[0]
        app: Any
        if kind == "fastapi":
            app = web_fastapi.create_app(self.database, commit=self.commit, errors=errors)
            _fastapi_routes(app, asynchronous, self.gate)
            self._client = FastAPIClient(_observe_asgi(app, self._see))
        elif kind == "starlette":
            app = web_starlette.create_app(self.database, commit=self.commit, errors=errors)
            _starlette_routes(app, asynchronous, self.gate)
            self._client = StarletteClient(_observe_asgi(app, self._see))
        else:
            app = web_litestar.create_app(self.database, commit=self.commit, errors=errors)
            _litestar_routes(app, asynchronous, self.gate)
            self._client = LitestarClient(_observe_asgi(app, self._see))

    def _serve_flask(self, errors: ErrorMap | None) -> None:
        assert isinstance(self.database, Database)
        app = web_flask.create_app(self.database, commit=self.commit, errors=errors)
        _flask_routes(app, app.extensions["uow"], self.gate)
        app.wsgi_app = _observe_wsgi(app.wsgi_app, self._see)  # type: ignore[method-assign]
        self.app = app

    @property
    def engine(self) -> Engine:
        """The application's engine (the sync one under an async engine), for fault injection."""
        engine = self.database.engine
        return engine if isinstance(engine, Engine) else engine.sync_engine

    def checked_out(self) -> int:
        """How many of the application's connections are checked out of its pool now."""
        return self.engine.pool.checkedout()  # type: ignore[attr-defined, no-any-return]

    def request(self, method: str, path: str, **options: Any) -> Reply:
        """Send one request; the warnings issued while it is served are recorded, not raised."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reply = self._send(method, path, **options)
        reply.warnings = [warning.category for warning in caught]
        return reply

    def _send(self, method: str, path: str, **options: Any) -> Reply:
        if self.framework == "flask":
            if "params" in options:
                options["query_string"] = options.pop("params")
            response = self.app.test_client().open(path, method=method, **options)
            body = response.get_json(silent=True)
            return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, body)
        try:
            response = self._client.request(method, path, **options)
        except HandlerFailed:  # Starlette's server-error middleware raises it again after its 500
            return Reply(500, {}, None)
        try:
            body = response.json()
        except ValueError:
            body = None
        return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, body)

    def post(self, path: str, **options: Any) -> Reply:
        return self.request("POST", path, **options)

    def get(self, path: str, **options: Any) -> Reply:
        return self.request("GET", path, **options)

    def concurrently(self, *paths: str) -> list[Reply]:
        """POST to each path at once, each from a thread of its own (warnings are not recorded)."""
        self.observing = False  # reading while another request writes would meet SQLite's locks
        replies: list[Reply | None] = [None] * len(paths)
        failures: list[BaseException] = []

        def post(index: int, path: str) -> None:
            try:
                replies[index] = self._send("POST", path)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=post, args=item) for item in enumerate(paths)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not failures, failures
        assert all(reply is not None for reply in replies), "a request never finished"
        return [reply for reply in replies if reply is not None]

    def close(self) -> None:
        """Stop the application: its lifespan's shutdown (or, for Flask, `dispose()`)."""
        if not self.started:
            return
        self.started = False
        if self.framework == "flask":
            self.database.dispose()
        else:
            self._client.__exit__(None, None, None)
