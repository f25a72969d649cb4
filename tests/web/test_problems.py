"""Which problem each exception becomes: uow's defaults, the application's overrides, the body's shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.orm.exc import StaleDataError

import uow
from uow.web import PROBLEM_TYPES, InvalidQueryError, Problem, Problems


def translated(cls: type[Any], message: str) -> BaseException:
    """A translated error as uow raises it, its driver message carrying the row's values."""
    original = sqlalchemy.exc.IntegrityError("INSERT ...", {"id": "7", "name": "LILY"}, ValueError(message))
    return cls.from_sqlalchemy(original)


def test_a_problem_body_has_the_rfc_9457_members_then_the_extensions() -> None:
    problem = Problem(503, detail="later", type="https://example.org/busy", extensions={"attempts": 3})

    assert problem.body() == {
        "type": "https://example.org/busy",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "later",
        "attempts": 3,
    }
    assert json.loads(problem.content()) == problem.body()


def test_a_problem_without_a_type_is_about_blank_titled_by_its_status() -> None:
    assert Problem(404).body() == {"type": "about:blank", "title": "Not Found", "status": 404}


def test_a_not_found_error_is_a_404_naming_the_fields_not_the_values() -> None:
    problem = Problems()(uow.NotFoundError(object, "email=?"))

    assert problem == Problem(404, detail="no object found for email=?", type=PROBLEM_TYPES["not-found"])


@pytest.mark.parametrize("cls", [uow.DuplicateKeyError, uow.IntegrityError])
def test_integrity_errors_are_409s_without_the_driver_message(cls: type[uow.IntegrityError]) -> None:
    error = translated(cls, "Duplicate entry 'LILY' for key 'name'")

    problem = Problems()(error)

    assert problem is not None
    assert problem.status == 409
    assert problem.type == PROBLEM_TYPES["conflict"]
    assert "LILY" not in problem.content().decode()


def test_a_row_changed_since_it_was_read_is_a_409() -> None:
    problem = Problems()(
        StaleDataError("UPDATE statement on table 'user' expected to update 1 row(s); 0 were matched.")
    )

    assert problem is not None
    assert problem.status == 409
    assert problem.type == PROBLEM_TYPES["conflict"]
    assert "user" not in (problem.detail or "")


def test_a_transient_error_is_a_503_with_retry_after() -> None:
    problem = Problems(retry_after=7)(translated(uow.TransientError, "deadlock"))

    assert problem is not None
    assert problem.status == 503
    assert problem.headers == {"Retry-After": "7"}
    assert problem.type == PROBLEM_TYPES["unavailable"]


def test_a_commit_of_unknown_outcome_is_a_500_saying_so() -> None:
    problem = Problems()(translated(uow.CommitOutcomeUnknownError, "server closed the connection"))

    assert problem is not None
    assert problem.status == 500
    assert problem.body()["outcome"] == "unknown"
    assert problem.type == PROBLEM_TYPES["commit-outcome-unknown"]


@pytest.mark.parametrize("committed", [True, False])
def test_a_hook_error_is_a_500_saying_whether_the_data_was_committed(committed: bool) -> None:
    problem = Problems()(uow.HookError("hooks failed", [RuntimeError("mail")], committed=committed))

    assert problem is not None
    assert problem.status == 500
    assert problem.body()["committed"] is committed


def test_an_invalid_query_is_a_400() -> None:
    problem = Problems()(InvalidQueryError("the query parameter 'limit' must be an integer from 1 to 100"))

    assert problem is not None
    assert problem.status == 400
    assert problem.detail == "the query parameter 'limit' must be an integer from 1 to 100"


def test_exceptions_uow_does_not_map_are_left_to_the_framework() -> None:
    problems = Problems()

    assert problems(RuntimeError("boom")) is None
    assert problems(uow.StateError("misuse")) is None
    assert problems(uow.InvalidArgumentError("a bug in the handler")) is None


def test_an_override_replaces_the_default_of_its_class() -> None:
    problems = Problems({uow.NotFoundError: lambda error: Problem(410)})

    assert problems(uow.NotFoundError(object, "")) == Problem(410)


def test_the_most_specific_class_wins_over_an_override_of_its_parent() -> None:
    problems = Problems({uow.IntegrityError: lambda error: Problem(422)})

    duplicate = problems(translated(uow.DuplicateKeyError, "duplicate"))
    other = problems(translated(uow.IntegrityError, "not null"))

    assert duplicate is not None
    assert duplicate.status == 409
    assert other == Problem(422)


def test_an_override_maps_an_exception_of_the_application() -> None:
    class PaymentRefused(Exception):
        pass

    problems = Problems({PaymentRefused: lambda error: Problem(402, detail="refused")})

    assert problems(PaymentRefused()) == Problem(402, detail="refused")
    assert PaymentRefused in problems.handled


def test_mapping_a_class_to_none_leaves_it_to_the_framework() -> None:
    problems = Problems({uow.NotFoundError: None})

    assert problems(uow.NotFoundError(object, "")) is None
    assert uow.NotFoundError not in problems.handled


def test_a_failed_commit_that_nothing_maps_is_a_500_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    error = RuntimeError("the driver broke")

    with caplog.at_level("ERROR", logger="uow.web"):
        problem = Problems().for_failed_commit(error)

    assert problem.status == 500
    assert problem.type == PROBLEM_TYPES["commit-failed"]
    assert "the driver broke" not in problem.content().decode()
    assert caplog.records[0].exc_info is not None
    assert caplog.records[0].exc_info[1] is error


@pytest.mark.parametrize("retry_after", [-1, 1.5, True, "1"])
def test_retry_after_must_be_a_non_negative_int(retry_after: object) -> None:
    with pytest.raises(uow.InvalidArgumentError, match="retry_after"):
        Problems(retry_after=retry_after)  # type: ignore[arg-type]


def test_the_keys_of_errors_must_be_exception_classes() -> None:
    with pytest.raises(uow.InvalidArgumentError, match="exception classes"):
        Problems({"NotFoundError": None})  # type: ignore[dict-item]
