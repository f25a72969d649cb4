"""The rules every web integration shares, with no web framework: errors as HTTP problems, commit modes.

- [`Problem`][uow.web.Problem] is an RFC 9457 problem detail (`application/problem+json`).
- [`Problems`][uow.web.Problems] maps an exception to its problem: uow's errors by default,
  overridable per exception class, the most specific class winning.
- The commit modes: `"explicit"` (uow's rule, the default: only the handler's `unit.commit()`
  commits) and `"on_success"` (the integration commits when the response status is 2xx or 3xx).
  Either way the unit is settled when the response starts, before anything is sent: committed,
  rolled back (any status of 400 or more), or left as the handler left it. `settle()` and
  `settle_async()` are that step; a commit that fails there is turned into its problem, so it never
  becomes a 2xx.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from sqlalchemy.orm.exc import StaleDataError

from uow import (
    CommitOutcomeUnknownError,
    DuplicateKeyError,
    HookError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    TransientError,
)

if TYPE_CHECKING:
    from uow import AsyncUnitOfWork, UnitOfWork

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_TYPES",
    "CommitMode",
    "ErrorMap",
    "InvalidQueryError",
    "Problem",
    "Problems",
    "check_commit_mode",
    "settle",
    "settle_async",
    "succeeded",
]

logger = logging.getLogger("uow.web")

PROBLEM_MEDIA_TYPE: Final[str] = "application/problem+json"

CommitMode: TypeAlias = Literal["explicit", "on_success"]
"""`"explicit"`: only the handler's `unit.commit()` commits (the default). `"on_success"`: the
integration commits when the response status is 2xx or 3xx, before the response is sent."""

_DOCS: Final[str] = "https://uow.readthedocs.io/en/latest/web/"
PROBLEM_TYPES: Final[Mapping[str, str]] = {
    "not-found": _DOCS + "#not-found",
    "conflict": _DOCS + "#conflict",
    "unavailable": _DOCS + "#unavailable",
    "commit-outcome-unknown": _DOCS + "#commit-outcome-unknown",
    "after-commit-failed": _DOCS + "#after-commit-failed",
    "commit-failed": _DOCS + "#commit-failed",
    "invalid-query": _DOCS + "#invalid-query",
}
"""The `type` URI of each problem uow reports, each documented on the "Web applications" page."""


class InvalidQueryError(InvalidArgumentError):
    """A request's query parameters cannot be turned into a repository query: the client's mistake.

    Reported as `400 Bad Request`. The message names the parameter, never its value.
    """


@dataclass(frozen=True, slots=True)
class Problem:
    """An RFC 9457 problem detail: what a client receives, as `application/problem+json`.

    Attributes:
        status: The HTTP status code.
        title: A short summary of the problem type; by default the status's reason phrase.
        detail: What happened this time, for a person; never the values of the request's data.
        type: A URI naming the problem type; `about:blank` when the status says it all.
        headers: Extra response headers, such as `Retry-After`.
        extensions: Extra members of the body (`{"outcome": "unknown"}`).
    """

    status: int
    title: str = ""
    detail: str | None = None
    type: str = "about:blank"
    headers: Mapping[str, str] = field(default_factory=dict)
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.title:
            try:
                phrase = HTTPStatus(self.status).phrase
            except ValueError:
                phrase = "Error"
            object.__setattr__(self, "title", phrase)

    def body(self) -> dict[str, Any]:
        """The members of the JSON body: `type`, `title`, `status`, `detail` if any, then the extensions."""
        members: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail is not None:
            members["detail"] = self.detail
        members.update(self.extensions)
        return members

    def content(self) -> bytes:
        """The JSON body, encoded as UTF-8."""
        return json.dumps(self.body(), separators=(",", ":")).encode()


ErrorMap: TypeAlias = Mapping[type[Exception], "Callable[[Any], Problem] | None"]
"""Exception class to the function that builds its problem, or to `None` to leave that class to the
framework (a plain 500 unless the application handles it)."""


def _not_found(error: NotFoundError) -> Problem:
    # The message names the model and the fields searched, with every value shown as "?".
    return Problem(404, detail=str(error), type=PROBLEM_TYPES["not-found"])


def _duplicate(error: DuplicateKeyError) -> Problem:
    return Problem(
        409,
        title="Conflict",
        detail="The change conflicts with data that exists already: a unique value is taken.",
        type=PROBLEM_TYPES["conflict"],
    )


def _integrity(error: IntegrityError) -> Problem:
    return Problem(
        409,
        title="Conflict",
        detail="The change conflicts with a constraint of the stored data.",
        type=PROBLEM_TYPES["conflict"],
    )


def _stale(error: StaleDataError) -> Problem:
    return Problem(
        409,
        title="Conflict",
        detail="The data was changed or removed by someone else since it was read; read it again.",
        type=PROBLEM_TYPES["conflict"],
    )


def _commit_outcome_unknown(error: CommitOutcomeUnknownError) -> Problem:
    return Problem(
        500,
        title="Commit outcome unknown",
        detail=(
            "The connection to the database was lost while the commit was in flight: the changes "
            "may or may not have been saved. Check whether they were before trying again."
        ),
        type=PROBLEM_TYPES["commit-outcome-unknown"],
        extensions={"outcome": "unknown"},
    )


def _hook_failed(error: HookError) -> Problem:
    if error.committed:
        detail = "The changes were saved, but work that runs after the commit failed."
    else:
        detail = "The changes were rolled back, and work that runs after the rollback failed."
    return Problem(
        500,
        title="Work after the transaction failed",
        detail=detail,
        type=PROBLEM_TYPES["after-commit-failed"],
        extensions={"committed": error.committed},
    )


def _invalid_query(error: InvalidQueryError) -> Problem:
    return Problem(400, detail=str(error), type=PROBLEM_TYPES["invalid-query"])


def _unknown_commit_failure() -> Problem:
    return Problem(
        500,
        title="Commit failed",
        detail="The changes could not be saved.",
        type=PROBLEM_TYPES["commit-failed"],
    )


class Problems:
    """Which problem each exception becomes: uow's defaults, then the application's overrides.

    | exception | status | |
    |---|---|---|
    | `NotFoundError` | 404 | the model and fields searched, values shown as `?` |
    | `DuplicateKeyError`, `IntegrityError` | 409 | no values of the rejected row |
    | SQLAlchemy's `StaleDataError` | 409 | a row changed or gone since it was read (a version column) |
    | `TransientError` | 503 | `Retry-After`; the transaction was rolled back |
    | `CommitOutcomeUnknownError` | 500 | `"outcome": "unknown"` |
    | `HookError` | 500 | `"committed"`: whether the data was saved |
    | `InvalidQueryError` | 400 | the query parameter that was refused |

    An exception is looked up along its class's MRO, so the most specific class wins: overriding
    `IntegrityError` does not change `DuplicateKeyError`. Mapping a class to `None` leaves it to
    the framework.
    """

    __slots__ = ("_cache", "_map")

    def __init__(self, errors: ErrorMap | None = None, *, retry_after: int = 1) -> None:
        """Build the mapping.

        Args:
            errors: Exception class to a function building its problem (or `None`), overriding
                the defaults above.
            retry_after: Seconds a client is told to wait (`Retry-After`) after a transient failure.

        Raises:
            InvalidArgumentError: `retry_after` is not a non-negative int, or a key of `errors`
                is not an exception class.
        """
        if not isinstance(retry_after, int) or isinstance(retry_after, bool) or retry_after < 0:
            raise InvalidArgumentError(
                f"retry_after must be a non-negative int of seconds, not {retry_after!r}"
            )

        def transient(error: TransientError) -> Problem:
            return Problem(
                503,
                detail=(
                    "The database could not complete the transaction because of a temporary "
                    f"conflict or outage; it was rolled back. Try again in {retry_after} s."
                ),
                type=PROBLEM_TYPES["unavailable"],
                headers={"Retry-After": str(retry_after)},
            )

        mapping: dict[type[BaseException], Callable[[Any], Problem] | None] = {
            NotFoundError: _not_found,
            DuplicateKeyError: _duplicate,
            IntegrityError: _integrity,
            StaleDataError: _stale,
            TransientError: transient,
            CommitOutcomeUnknownError: _commit_outcome_unknown,
            HookError: _hook_failed,
            InvalidQueryError: _invalid_query,
        }
        for cls, build in (errors or {}).items():
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                raise InvalidArgumentError(f"the keys of errors must be exception classes, got {cls!r}")
            mapping[cls] = build
        self._map: dict[type[BaseException], Callable[[Any], Problem] | None] = mapping
        self._cache: dict[type[BaseException], Callable[[Any], Problem] | None] = {}

    @property
    def handled(self) -> tuple[type[Exception], ...]:
        """The exception classes that become a problem (those mapped to `None` excluded)."""
        return tuple(
            cls for cls, build in self._map.items() if build is not None and issubclass(cls, Exception)
        )

    def builder(self, cls: type[BaseException]) -> Callable[[Any], Problem] | None:
        """The function that builds the problem of exceptions of class `cls`, if one does."""
        try:
            return self._cache[cls]
        except KeyError:
            pass
        mapping = self._map
        build = next((mapping[base] for base in cls.__mro__ if base in mapping), None)
        self._cache[cls] = build
        return build

    def __call__(self, error: BaseException) -> Problem | None:
        """The problem that `error` becomes, or `None` when it is left to the framework."""
        build = self.builder(type(error))
        return build(error) if build is not None else None

    def for_failed_commit(self, error: BaseException) -> Problem:
        """The problem of a commit that the integration made and that failed: never a 2xx.

        An exception no mapping covers is logged (on the `uow.web` logger) and becomes a 500.
        """
        problem = self(error) if isinstance(error, Exception) else None
        if problem is None:
            logger.error("the commit at the end of the request failed", exc_info=error)
            return _unknown_commit_failure()
        return problem


def check_commit_mode(commit: object) -> CommitMode:
    """`commit` if it names a commit mode; otherwise `InvalidArgumentError`."""
    if commit == "explicit":
        return "explicit"
    if commit == "on_success":
        return "on_success"
    raise InvalidArgumentError(f'commit must be "explicit" or "on_success", got {commit!r}')


def succeeded(status: int) -> bool:
    """Whether a response with this status counts as a success: 2xx or 3xx."""
    return 200 <= status < 400


def settle(unit: UnitOfWork, commit: CommitMode, status: int, problems: Problems) -> Problem | None:
    """End the request's transaction as the response with `status` starts; the problem to send instead.

    A success commits in `"on_success"` mode and is left alone in `"explicit"` mode; any other
    status rolls back in both modes, without a warning (an error response abandons the work). A
    commit that fails is rolled back by the unit and returned as its problem. A rollback that fails
    is logged and the error response goes out as it is. Nothing happens to a unit that is not
    active.
    """
    if not unit.active:
        return None
    if succeeded(status):
        if commit == "on_success":
            try:
                unit.commit()
            except Exception as error:
                return problems.for_failed_commit(error)
        return None
    try:
        unit.rollback()
    except Exception:
        logger.exception("rolling back the unit of work after an error response failed")
    return None


async def settle_async(
    unit: AsyncUnitOfWork, commit: CommitMode, status: int, problems: Problems
) -> Problem | None:
    """`settle()` for an [`AsyncUnitOfWork`][uow.AsyncUnitOfWork]."""
    if not unit.active:
        return None
    if succeeded(status):
        if commit == "on_success":
            try:
                await unit.commit()
            except Exception as error:
                return problems.for_failed_commit(error)
        return None
    try:
        await unit.rollback()
    except Exception:
        logger.exception("rolling back the unit of work after an error response failed")
    return None
