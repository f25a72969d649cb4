"""A commit whose outcome is unknown, as a client of each integration hears it (servers only).

The server session is ended from another connection just before COMMIT is sent, so the COMMIT meets
a dead connection: the commit may or may not have happened, as far as the application can tell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, text

from tests.conftest import Backend
from tests.web.harness import Served
from uow.web import PROBLEM_TYPES

SERVERS = pytest.mark.parametrize("backend_setup", ["postgresql", "mariadb"], indirect=True)
BOTH_MODES = pytest.mark.parametrize("commit", ["explicit", "on_success"])

Serve = Callable[..., Served]


def kill_own_connection_at_commit(backend: Backend) -> Callable[[Any], None]:
    """A `commit` listener that ends the connection's server session just before COMMIT is sent."""

    def kill(connection: Any) -> None:
        if backend.kind == "postgresql":
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            statement = text("SELECT pg_terminate_backend(:pid)").bindparams(pid=pid)
        else:
            pid = connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()
            statement = text(f"KILL {int(pid)}")
        with backend.check.begin() as other:
            other.execute(statement)

    return kill


@SERVERS
@BOTH_MODES
def test_a_commit_of_unknown_outcome_answers_500_saying_the_outcome_is_unknown(
    serve: Serve, backend: Backend, commit: str
) -> None:
    served = serve(commit)
    kill = kill_own_connection_at_commit(backend)
    event.listen(served.engine, "commit", kill)
    try:
        reply = served.post("/users", json={"id": "7", "name": "hanmeimei"})
    finally:
        event.remove(served.engine, "commit", kill)

    assert reply.status == 500
    assert reply.media_type == "application/problem+json"
    assert reply.body["type"] == PROBLEM_TYPES["commit-outcome-unknown"]
    assert reply.body["outcome"] == "unknown"
    assert "may or may not have been saved" in reply.body["detail"]
