"""The engine's life in each integration: made at startup, disposed at shutdown, its connections closed."""

from __future__ import annotations

import gc

import pytest
from sqlalchemy import Engine, event

from tests.conftest import Backend
from tests.web.harness import FRAMEWORKS, Served
from uow.examples import web_flask
from uow.web import Database

pytestmark = pytest.mark.parametrize("backend_setup", ["sqlite-file"], indirect=True)
ASGI = pytest.mark.parametrize("framework", [name for name in FRAMEWORKS if name != "flask"], indirect=True)


def count_closed_connections(engine: Engine) -> list[object]:
    closed: list[object] = []
    event.listen(engine, "close", lambda connection, record: closed.append(connection))
    return closed


@ASGI
def test_an_asgi_application_makes_its_engine_at_startup_and_disposes_it_at_shutdown(
    framework: str, backend: Backend
) -> None:
    served = Served(framework, backend, "explicit", start=False)
    assert not served.database.started

    served.start()
    assert served.database.started
    closed = count_closed_connections(served.engine)
    assert served.post("/users", json={"id": "7", "name": "hanmeimei"}).status == 201
    assert closed == []  # the connection went back to the pool

    served.close()
    assert not served.database.started
    assert len(closed) == 1  # closed by the disposal


def test_the_flask_extension_makes_the_engine_in_init_app_and_disposes_it_with_the_application(
    backend: Backend,
) -> None:
    database = Database(backend.url)
    app = web_flask.create_app(database)
    assert database.started
    closed = count_closed_connections(database.engine)
    assert app.test_client().post("/users", json={"id": "7", "name": "hanmeimei"}).status_code == 201

    del app
    gc.collect()

    assert not database.started
    assert len(closed) == 1


@ASGI
def test_an_asgi_application_can_be_started_again_after_its_shutdown(
    framework: str, backend: Backend
) -> None:
    served = Served(framework, backend, "explicit")
    first = served.database.engine
    served.close()

    served.start()
    try:
        assert served.database.engine is not first
        assert served.post("/users", json={"id": "7", "name": "hanmeimei"}).status == 201
    finally:
        served.close()
