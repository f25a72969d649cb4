"""A server that drops the unit's connection: the user's exception still wins, the pool gets it back."""

from __future__ import annotations

import pytest
import sqlalchemy
from sqlalchemy import text

from tests.conftest import Backend
from tests.drivers import Flavour, UnitDriver
from tests.models import User

SERVERS = pytest.mark.parametrize("backend_setup", ["postgresql", "mariadb"], indirect=True)


def kill_connection_of(unit: UnitDriver, backend: Backend) -> None:
    """Terminate the unit's server session from another connection, as an operator or failover would."""
    if backend.kind == "postgresql":
        pid = unit.execute(text("SELECT pg_backend_pid()")).scalar_one()
        kill = text("SELECT pg_terminate_backend(:pid)").bindparams(pid=pid)
    else:
        pid = unit.execute(text("SELECT CONNECTION_ID()")).scalar_one()
        kill = text(f"KILL {int(pid)}")
    with backend.check.begin() as connection:
        connection.execute(kill)


@SERVERS
def test_a_rollback_on_a_dead_connection_does_not_hide_the_original_exception(
    flavour: Flavour, backend: Backend
) -> None:
    error = ValueError("the user's error")
    before = flavour.checked_out()

    with pytest.raises(ValueError) as caught, flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.flush()
        kill_connection_of(unit, backend)
        raise error

    assert caught.value is error
    assert flavour.checked_out() == before
    assert backend.users() == []


@SERVERS
def test_a_commit_on_a_dead_connection_raises_and_the_unit_goes_on(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.flush()
        kill_connection_of(unit, backend)
        with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
            unit.commit()
        assert caught.value.connection_invalidated

        unit.repository(User).add(User(id="2", name="ben"))
        unit.commit()

    assert flavour.checked_out() == 0
    assert backend.users() == [("2", "ben")]
