"""The reference `User` model behind a Flask application, one unit of work per request.

Run it (`pip install "uow[flask]"`):

    flask --app uow.examples.web_flask:create_app run

`DATABASE_URL` names the database (default `sqlite:///users.db`).

- `POST /users` with `{"id": "7", "name": "hanmeimei"}`: 201, committed before the response;
  an id that exists already: 409 (`application/problem+json`).
- `GET /users/7`: the user, or 404.
- `GET /users?name=hanmeimei&sort=-id&limit=10&offset=0`: a page of users.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request

from uow.examples.users import Base, User
from uow.web import CommitMode, ErrorMap
from uow.web.flask import Database, UnitOfWorkExtension, list_query

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


def create_app(
    database: Database | None = None, *, commit: CommitMode = "explicit", errors: ErrorMap | None = None
) -> Flask:
    """The application on `database` (by default from `DATABASE_URL`), its tables created at once.

    `commit` and `errors` go to the extension: the commit mode, and overrides of the problems.
    """
    if database is None:
        database = Database(os.environ.get("DATABASE_URL", "sqlite:///users.db"))
    app = Flask(__name__)
    units = UnitOfWorkExtension(database, app, commit=commit, errors=errors)
    Base.metadata.create_all(database.engine)

    @app.post("/users")
    def create_user() -> tuple[dict[str, Any], int]:
        user = _new_user(request.get_json(silent=True))
        if user is None:
            return {"detail": "id: 1 to 20 characters; name: at most 20"}, 422
        unit = units.unit
        unit.repository(User).add(user)
        if commit == "explicit":
            unit.commit()
        return _json(user), 201

    @app.get("/users/<user_id>")
    def get_user(user_id: str) -> dict[str, Any]:
        return _json(units.unit.repository(User).get_one(user_id))  # NotFoundError: 404

    @app.get("/users")
    def list_users() -> list[dict[str, Any]]:
        query = list_query(User, filterable=["id", "name"])
        return [_json(user) for user in units.unit.repository(User).list(**query.arguments)]

    return app
