"""A unit of work per request, in every integration: what is committed, when, and what the client hears.

Each specification runs on every framework and flavour (`fastapi-async`, ..., `flask`) through the
framework's own test client, on SQLite, PostgreSQL and MariaDB. `served.seen` holds the committed
rows as read through another connection at the moment each response started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import uow
from tests.conftest import Backend
from tests.web.harness import Served
from uow.testing import fail_commit
from uow.web import PROBLEM_TYPES

pytestmark = pytest.mark.parametrize("backend_setup", ["sqlite-file", "postgresql", "mariadb"], indirect=True)
BOTH_MODES = pytest.mark.parametrize("commit", ["explicit", "on_success"])

Serve = Callable[..., Served]


# -- when the commit happens ---------------------------------------------------------------------


@BOTH_MODES
def test_a_created_user_is_committed_before_the_response_starts(serve: Serve, commit: str) -> None:
    served = serve(commit)

    reply = served.post("/users", json={"id": "7", "name": "hanmeimei"})

    assert reply.status == 201
    assert reply.body == {"id": "7", "name": "hanmeimei"}
    assert served.seen == [[("7", "hanmeimei")]]
    assert reply.warnings == []


def test_on_success_commits_what_the_handler_left_before_the_response_starts(serve: Serve) -> None:
    served = serve("on_success")

    reply = served.post("/drafts/8")

    assert reply.status == 201
    assert served.seen == [[("8", "draft")]]


def test_explicit_mode_commits_nothing_the_handler_did_not_commit(serve: Serve, backend: Backend) -> None:
    served = serve("explicit")

    reply = served.post("/drafts/8")

    assert reply.status == 201
    assert reply.warnings == [uow.UncommittedWorkWarning]
    assert served.seen == [[]]
    assert backend.users() == []


# -- what is rolled back -------------------------------------------------------------------------


@BOTH_MODES
def test_an_error_response_rolls_back_without_a_warning(serve: Serve, backend: Backend, commit: str) -> None:
    served = serve(commit)

    reply = served.post("/drafts/8/refused")

    assert reply.status == 409
    assert reply.warnings == []
    assert backend.users() == []


@BOTH_MODES
def test_a_handler_exception_rolls_back(serve: Serve, backend: Backend, commit: str) -> None:
    served = serve(commit)

    reply = served.post("/drafts/8/failing")

    assert reply.status == 500
    assert backend.users() == []
    assert served.post("/users", json={"id": "9", "name": "next"}).status == 201  # the app goes on


# -- failed commits never answer 2xx ---------------------------------------------------------------


@BOTH_MODES
@pytest.mark.parametrize(
    ("fault", "status", "problem"),
    [("serialization_failure", 503, "unavailable"), ("duplicate_key", 409, "conflict")],
)
def test_a_failed_commit_answers_its_problem_and_saves_nothing(
    serve: Serve, backend: Backend, commit: str, fault: Any, status: int, problem: str
) -> None:
    served = serve(commit)

    with fail_commit(served.engine, fault) as injected:
        reply = served.post("/users", json={"id": "7", "name": "hanmeimei"})

    assert injected.fired == 1
    assert reply.status == status
    assert reply.media_type == "application/problem+json"
    assert reply.body["type"] == PROBLEM_TYPES[problem]
    assert reply.body["status"] == status
    assert reply.headers.get("retry-after") == ("1" if status == 503 else None)
    assert backend.users() == []


def test_a_duplicate_id_answers_409_without_the_rejected_values(serve: Serve, backend: Backend) -> None:
    served = serve()
    assert served.post("/users", json={"id": "7", "name": "hanmeimei"}).status == 201

    reply = served.post("/users", json={"id": "7", "name": "LILY"})

    assert reply.status == 409
    assert reply.body == {
        "type": PROBLEM_TYPES["conflict"],
        "title": "Conflict",
        "status": 409,
        "detail": "The change conflicts with data that exists already: a unique value is taken.",
    }
    assert backend.users() == [("7", "hanmeimei")]


# -- concurrency -----------------------------------------------------------------------------------


def test_concurrent_requests_get_units_of_their_own(serve: Serve, backend: Backend) -> None:
    served = serve()

    replies = served.concurrently("/drafts/1/waiting", "/drafts/2/waiting")

    assert [reply.status for reply in replies] == [201, 201]
    first, second = served.gate.units
    assert first is not second
    assert backend.users() == [("1", "draft"), ("2", "draft")]
