"""A unit of work per HTTP request for any ASGI application, settled before the response starts.

Pure ASGI, so that Starlette, FastAPI and Litestar share it; it imports no web framework, only
`anyio` (which all three depend on) to run a sync unit's I/O in a worker thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, TypeAlias

import anyio.to_thread

from uow import AsyncUnitOfWork, InvalidArgumentError, StateError, UnitOfWork
from uow.web._database import AsyncDatabase, Database
from uow.web._http import (
    PROBLEM_MEDIA_TYPE,
    CommitMode,
    ErrorMap,
    Problem,
    Problems,
    check_commit_mode,
    settle,
    settle_async,
)

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "UnitOfWorkMiddleware",
    "request_unit",
    "send_problem",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


class UnitOfWorkMiddleware:
    """Give every HTTP request a unit of work of its own, and end it before the response starts.

    ```python
    database = AsyncDatabase("postgresql+asyncpg://app@db/app")
    app = Starlette(
        routes=routes,
        middleware=[Middleware(UnitOfWorkMiddleware, database=database)],
        lifespan=database.lifespan,
    )
    ```

    For each HTTP request (other scopes pass through untouched):

    1. A unit of `database` is entered (no I/O: the session connects on its first query) and put
       in the request's state, `request.state.unit` (`state_key` names it).
    2. When the application starts its response, before anything is sent, the unit is settled:
       with a 2xx or 3xx status it is committed in `"on_success"` mode and left as the handler left
       it in `"explicit"` mode; with any other status it is rolled back. If that commit fails, the
       client gets the failure's problem (a 409, 503, 500, ...) instead of the response: a failed
       commit never becomes a 2xx.
    3. An exception that the application lets through rolls the unit back; one that `errors` maps
       (uow's errors by default, see [`Problems`][uow.web.Problems]) becomes its
       `application/problem+json` response, if the response has not started; any other propagates.
    4. When the application is done (after the response body is sent, so that a streamed body can
       still read through the unit) the unit is left: whatever is still uncommitted is rolled back,
       with [`UncommittedWorkWarning`][uow.UncommittedWorkWarning] as usual, and the session closed.

    A sync [`Database`][uow.web.Database] gives [`UnitOfWork`][uow.UnitOfWork]s, whose commit,
    rollback and exit run in a worker thread; an [`AsyncDatabase`][uow.web.AsyncDatabase] gives
    [`AsyncUnitOfWork`][uow.AsyncUnitOfWork]s.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        database: Database | AsyncDatabase,
        commit: CommitMode = "explicit",
        errors: ErrorMap | None = None,
        retry_after: int = 1,
        state_key: str = "unit",
    ) -> None:
        """Wrap `app`.

        Args:
            app: The ASGI application.
            database: Where the units come from; it must be started (by its lifespan) before the
                first request.
            commit: `"explicit"` (only `unit.commit()` commits) or `"on_success"` (2xx and 3xx
                responses commit).
            errors: Overrides of the exception-to-problem mapping, see [`Problems`][uow.web.Problems].
            retry_after: Seconds in `Retry-After` after a transient failure.
            state_key: The name of the unit in the request's state.

        Raises:
            InvalidArgumentError: An option is invalid.
        """
        if not isinstance(database, Database | AsyncDatabase):
            raise InvalidArgumentError(f"database must be a Database or an AsyncDatabase, got {database!r}")
        self.app: ASGIApp = app
        self.database: Database | AsyncDatabase = database
        self.commit: CommitMode = check_commit_mode(commit)
        self.problems: Problems = Problems(errors, retry_after=retry_after)
        self.state_key: str = state_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        database = self.database
        if isinstance(database, AsyncDatabase):
            await self._serve_async(database.unit(), scope, receive, send)
        else:
            await self._serve(database.unit(), scope, receive, send)

    async def _serve(self, unit: UnitOfWork, scope: Scope, receive: Receive, send: Send) -> None:
        unit.__enter__()  # no I/O: the session connects on its first query

        async def settled(status: int) -> Problem | None:
            return await anyio.to_thread.run_sync(settle, unit, self.commit, status, self.problems)

        async def leave(error: BaseException | None) -> None:
            traceback = error.__traceback__ if error is not None else None
            await anyio.to_thread.run_sync(unit.__exit__, type(error) if error else None, error, traceback)

        await self._exchange(unit, scope, receive, send, settled, leave)

    async def _serve_async(self, unit: AsyncUnitOfWork, scope: Scope, receive: Receive, send: Send) -> None:
        await unit.__aenter__()

        async def settled(status: int) -> Problem | None:
            return await settle_async(unit, self.commit, status, self.problems)

        async def leave(error: BaseException | None) -> None:
            traceback = error.__traceback__ if error is not None else None
            await unit.__aexit__(type(error) if error else None, error, traceback)

        await self._exchange(unit, scope, receive, send, settled, leave)

    async def _exchange(
        self,
        unit: UnitOfWork | AsyncUnitOfWork,
        scope: Scope,
        receive: Receive,
        send: Send,
        settled: Callable[[int], Awaitable[Problem | None]],
        leave: Callable[[BaseException | None], Awaitable[None]],
    ) -> None:
        scope["state"] = {**(scope.get("state") or {}), self.state_key: unit}
        started = False  # the application's response start went out
        replaced = False  # a problem went out instead of the application's response

        async def send_after_settling(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the rest of the response the problem replaced
            if message["type"] == "http.response.start":
                problem = await settled(message["status"])
                if problem is not None:
                    replaced = True
                    await send_problem(send, problem)
                    return
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_after_settling)
        except Exception as error:
            await leave(error)
            problem = None if started or replaced else self.problems(error)
            if problem is None:
                raise
            await send_problem(send, problem)
            return
        except BaseException as error:
            await leave(error)
            raise
        await leave(None)


async def send_problem(send: Send, problem: Problem) -> None:
    """Send `problem` as a complete `application/problem+json` response."""
    content = problem.content()
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(content)).encode()),
    ]
    headers.extend(
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in problem.headers.items()
    )
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": content, "more_body": False})


def request_unit(scope: Mapping[str, object], state_key: str = "unit") -> UnitOfWork | AsyncUnitOfWork:
    """The unit that [`UnitOfWorkMiddleware`][uow.web.starlette.UnitOfWorkMiddleware] gave this request.

    Raises:
        StateError: The request has none: the middleware is not installed around this route, or
            under another `state_key`.
    """
    state = scope.get("state")
    unit = state.get(state_key) if isinstance(state, Mapping) else None
    if not isinstance(unit, UnitOfWork | AsyncUnitOfWork):
        raise StateError(
            f"this request has no unit of work in its state under {state_key!r}: add "
            "UnitOfWorkMiddleware to the application (with the same state_key)"
        )
    return unit
