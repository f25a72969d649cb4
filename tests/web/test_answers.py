"""What each integration answers on its own, whatever the database: errors as problems, query parameters.

Run on SQLite only: nothing here depends on the database (the specifications of `test_requests.py`
run on every backend).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import uow
from tests.conftest import Backend
from tests.web.harness import Served
from uow.examples.users import User
from uow.web import PROBLEM_TYPES, Problem

pytestmark = pytest.mark.parametrize("backend_setup", ["sqlite-file"], indirect=True)

Serve = Callable[..., Served]


# -- errors as problems ----------------------------------------------------------------------------


def test_a_missing_user_answers_404_naming_the_fields_searched_not_the_values(serve: Serve) -> None:
    served = serve()

    reply = served.get("/users/nobody")

    assert reply.status == 404
    assert reply.media_type == "application/problem+json"
    assert reply.body == {
        "type": PROBLEM_TYPES["not-found"],
        "title": "Not Found",
        "status": 404,
        "detail": "no User found for id=?",
    }


def test_the_application_overrides_a_problem(serve: Serve) -> None:
    def gone(error: uow.NotFoundError) -> Problem:
        return Problem(410, detail=f"{error.model.__name__} is gone", headers={"X-Reason": "gone"})

    served = serve(errors={uow.NotFoundError: gone})

    reply = served.get("/users/nobody")

    assert reply.status == 410
    assert reply.body == {"type": "about:blank", "title": "Gone", "status": 410, "detail": "User is gone"}
    assert reply.headers["x-reason"] == "gone"


# -- query parameters ------------------------------------------------------------------------------


def test_query_parameters_filter_sort_and_page(serve: Serve, backend: Backend) -> None:
    backend.insert(
        *(User(id=str(number), name="even" if number % 2 == 0 else "odd") for number in range(1, 9))
    )
    served = serve()

    reply = served.get("/users", params={"name": "even", "sort": "-id", "limit": "2", "offset": "1"})

    assert reply.status == 200
    assert reply.body == [{"id": "6", "name": "even"}, {"id": "4", "name": "even"}]


def test_a_refused_query_parameter_answers_400(serve: Serve) -> None:
    served = serve()

    reply = served.get("/users", params={"limit": "0"})

    assert reply.status == 400
    assert reply.media_type == "application/problem+json"
    assert reply.body["type"] == PROBLEM_TYPES["invalid-query"]
