"""Flask: an extension that gives every request a unit of work in `flask.g`, settled before the response.

Install with `pip install "uow[flask]"`.

```python
from flask import Flask, request

from uow.web.flask import Database, UnitOfWorkExtension

units = UnitOfWorkExtension(Database("postgresql+psycopg://app@db/app"))


def create_app() -> Flask:
    app = Flask(__name__)
    units.init_app(app)

    @app.post("/users")
    def create_user():
        unit = units.unit  # or flask.g.unit
        unit.repository(User).add(User(**request.get_json()))
        unit.commit()
        return {...}, 201

    return app
```

Per request:

- `before_request`: a [`UnitOfWork`][uow.UnitOfWork] is entered (no I/O: the session connects on
  its first query) and put in `flask.g` (`g.unit`; `key` names it).
- `after_request`, which Flask runs before the response goes to the server: the unit is settled.
  With a 2xx or 3xx status it is committed in `"on_success"` mode and left as the handler left it
  in `"explicit"` mode; with any other status it is rolled back. If that commit fails, the client
  gets the failure's problem instead of the response: a failed commit never becomes a 2xx.
- `teardown_request`: the unit is left (whatever is still uncommitted is rolled back, with
  [`UncommittedWorkWarning`][uow.UncommittedWorkWarning] as usual; an unhandled exception rolls
  back) and its session closed.
- uow's errors raised by a view are answered with `application/problem+json` (404, 409, 503, 500,
  400; see [`Problems`][uow.web.Problems]).

The engine is made by `init_app()` (Flask has no startup hook) and disposed when the application is
garbage-collected or the interpreter exits; `database.dispose()` disposes it at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from uow import InvalidArgumentError, StateError, UnitOfWork
from uow.web._database import Database
from uow.web._http import (
    PROBLEM_MEDIA_TYPE,
    CommitMode,
    ErrorMap,
    Problem,
    Problems,
    check_commit_mode,
    settle,
)
from uow.web._query import ListQuery, parse_list_query

__all__ = ["Database", "UnitOfWorkExtension", "list_query"]


def _response(problem: Problem) -> Response:
    return Response(problem.content(), problem.status, dict(problem.headers), content_type=PROBLEM_MEDIA_TYPE)


class UnitOfWorkExtension:
    """A unit of work per request for Flask applications, settled before the response is returned."""

    def __init__(
        self,
        database: Database,
        app: Flask | None = None,
        *,
        commit: CommitMode = "explicit",
        errors: ErrorMap | None = None,
        retry_after: int = 1,
        key: str = "unit",
    ) -> None:
        """Configure the extension; with `app`, also `init_app(app)`.

        Args:
            database: Where the units come from; started by `init_app()`.
            app: The application, or `None` to call `init_app()` later (application factories).
            commit: `"explicit"` (only `unit.commit()` commits) or `"on_success"` (2xx and 3xx
                responses commit).
            errors: Overrides of the exception-to-problem mapping, see [`Problems`][uow.web.Problems].
            retry_after: Seconds in `Retry-After` after a transient failure.
            key: The name of the unit in `flask.g`.

        Raises:
            InvalidArgumentError: An option is invalid.
        """
        if not isinstance(database, Database):
            raise InvalidArgumentError(
                f"the Flask extension takes a sync Database, got {database!r}; Flask views run in "
                "threads, so their units are sync UnitOfWorks"
            )
        self.database: Database = database
        self.commit: CommitMode = check_commit_mode(commit)
        self.problems: Problems = Problems(errors, retry_after=retry_after)
        self.key: str = key
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Start the database and register the request hooks and the error handlers on `app`.

        The database is started unless it is already (several applications may share it), and
        disposed when `app` is garbage-collected or at interpreter exit.
        """
        if not self.database.started:
            self.database.start()
        weakref.finalize(app, self.database.dispose)
        app.extensions["uow"] = self
        app.before_request(self._enter)
        app.after_request(self._settle)
        app.teardown_request(self._leave)
        for cls in self.problems.handled:
            app.register_error_handler(cls, self._answer)

    @property
    def unit(self) -> UnitOfWork:
        """The current request's unit.

        Raises:
            StateError: Outside a request, or in a request whose `before_request` hooks stopped
                before this extension's ran.
        """
        unit = g.get(self.key) if has_request_context() else None
        if not isinstance(unit, UnitOfWork):
            raise StateError(
                f"no unit of work in flask.g.{self.key}: use it inside a request of an application "
                "that init_app() set up"
            )
        return unit

    def _enter(self) -> None:
        unit = self.database.unit()
        unit.__enter__()  # no I/O: the session connects on its first query
        setattr(g, self.key, unit)

    def _settle(self, response: Response) -> Response:
        unit = g.get(self.key)
        if not isinstance(unit, UnitOfWork):
            return response
        problem = settle(unit, self.commit, response.status_code, self.problems)
        return response if problem is None else _response(problem)

    def _leave(self, error: BaseException | None) -> None:
        unit = g.pop(self.key, None)
        if isinstance(unit, UnitOfWork):
            unit.__exit__(
                type(error) if error is not None else None, error, error.__traceback__ if error else None
            )

    def _answer(self, error: Exception) -> Response:
        problem = self.problems(error)
        if problem is None:  # pragma: no cover - only classes with a problem are registered
            raise error
        return _response(problem)


def list_query(
    model: type[Any],
    *,
    filterable: Iterable[str] | None = None,
    sortable: Iterable[str] | None = None,
    default_limit: int = 50,
    max_limit: int = 100,
    ignore: Iterable[str] = (),
) -> ListQuery:
    """The current request's query parameters as arguments for `list()`.

    See [`parse_list_query()`][uow.web.parse_list_query].

    Raises:
        InvalidQueryError: A parameter is refused; the extension answers 400.
    """
    return parse_list_query(
        model,
        request.args.items(multi=True),
        filterable=filterable,
        sortable=sortable,
        default_limit=default_limit,
        max_limit=max_limit,
        ignore=ignore,
    )
