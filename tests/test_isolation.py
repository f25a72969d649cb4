"""Isolation levels, read-only units and durable (outermost-only) units."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import insert, text

import uow
from tests.conftest import Backend
from tests.drivers import Flavour, UnitDriver
from tests.models import User
from tests.test_repository import recorded_statements

SERVERS = pytest.mark.parametrize("backend_setup", ["postgresql", "mariadb"], indirect=True)
DEFAULT_LEVEL = {"postgresql": "read committed", "mariadb": "REPEATABLE-READ"}


def server_isolation(unit: UnitDriver, backend: Backend) -> str:
    """The isolation level of the unit's current transaction, as the server reports it."""
    query = "SHOW transaction_isolation" if backend.kind == "postgresql" else "SELECT @@tx_isolation"
    return str(unit.execute(text(query)).scalar_one())


# -- isolation ------------------------------------------------------------------------------------


@SERVERS
@pytest.mark.parametrize(
    ("level", "reported"),
    [
        ("SERIALIZABLE", {"postgresql": "serializable", "mariadb": "SERIALIZABLE"}),
        ("REPEATABLE READ", {"postgresql": "repeatable read", "mariadb": "REPEATABLE-READ"}),
        ("READ COMMITTED", {"postgresql": "read committed", "mariadb": "READ-COMMITTED"}),
    ],
)
def test_a_unit_runs_every_transaction_at_its_isolation_level(
    flavour: Flavour, backend: Backend, level: str, reported: dict[str, str]
) -> None:
    with flavour.unit(isolation_level=level) as unit:
        assert server_isolation(unit, backend) == reported[backend.kind]
        unit.commit()
        assert server_isolation(unit, backend) == reported[backend.kind]


@SERVERS
def test_the_next_unit_gets_the_connection_back_at_the_default_level(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit(isolation_level="SERIALIZABLE") as unit:
        assert server_isolation(unit, backend).upper() == "SERIALIZABLE"
    for _ in range(3):  # whichever pooled connection comes next
        with flavour.unit() as unit:
            assert server_isolation(unit, backend) == DEFAULT_LEVEL[backend.kind]


@pytest.mark.parametrize("backend_setup", ["sqlite-file"], indirect=True)
def test_a_sqlite_unit_can_read_uncommitted(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit(isolation_level="READ UNCOMMITTED") as unit:
        assert unit.execute(text("PRAGMA read_uncommitted")).scalar_one() == 1
    with flavour.unit() as unit:
        assert unit.execute(text("PRAGMA read_uncommitted")).scalar_one() == 0


@pytest.mark.parametrize("level", ["AUTOCOMMIT", "SNAPSHOT", "serialisable", ""])
def test_an_unknown_or_autocommit_isolation_level_is_refused(
    flavour: Flavour, backend: Backend, level: str
) -> None:
    with pytest.raises(uow.InvalidArgumentError, match="isolation_level"):
        flavour.unit(isolation_level=level)


# -- read-only ----------------------------------------------------------------------------------


def test_a_read_only_unit_reads(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="1", name="ann"))
    with flavour.unit(read_only=True) as unit:
        assert unit.repository(User).get_one("1").name == "ann"
        assert unit.repository(User).count() == 1


def test_a_read_only_unit_refuses_to_commit_changes_before_any_sql(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit(read_only=True) as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        with recorded_statements(flavour) as sent, pytest.raises(uow.StateError, match="read-only"):
            unit.commit()
        assert sent == []
        unit.rollback()

    assert backend.users() == []


def test_a_read_only_unit_refuses_to_flush_changes(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="1", name="ann"))
    with flavour.unit(read_only=True) as unit:
        unit.repository(User).get_one("1").name = "changed"
        with recorded_statements(flavour) as sent, pytest.raises(uow.StateError, match="read-only"):
            unit.flush()
        assert not any(statement.startswith("UPDATE") for statement in sent)
        unit.rollback()

    assert backend.users() == [("1", "ann")]


def raw_insert(backend: Backend) -> Any:
    """An INSERT as raw SQL text, which no client-side check can recognise as a write."""
    table = "`user`" if backend.kind == "mariadb" else '"user"'
    return text(f"INSERT INTO {table} (id, name) VALUES ('1', 'ann')")


@SERVERS
def test_raw_sql_writes_in_a_read_only_unit_fail_at_the_server(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit(read_only=True) as unit:
        with pytest.raises(sqlalchemy.exc.DBAPIError, match=r"(?i)read[- ]only"):
            unit.execute(raw_insert(backend))
        unit.rollback()

    assert backend.users() == []


def test_write_statements_in_a_read_only_unit_are_refused_before_any_sql(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit(read_only=True) as unit, recorded_statements(flavour) as sent:
        with pytest.raises(uow.StateError, match="read-only"):
            unit.execute(insert(User).values(id="1", name="ann"))
        with pytest.raises(uow.StateError, match="read-only"):
            unit.repository(User).insert_many([{"id": "2", "name": "ben"}])
        assert sent == []

    assert backend.users() == []


@SERVERS
def test_a_unit_after_a_read_only_one_can_write(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit(read_only=True) as unit:
        unit.repository(User).count()
    for number in range(3):  # whichever pooled connection comes next
        with flavour.unit() as unit:
            unit.execute(insert(User).values(id=str(number), name="writer"))
            unit.commit()

    assert len(backend.users()) == 3


@SERVERS
def test_read_only_and_serializable_combine(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit(read_only=True, isolation_level="SERIALIZABLE") as unit:
        assert server_isolation(unit, backend).upper() == "SERIALIZABLE"
        with pytest.raises(sqlalchemy.exc.DBAPIError, match=r"(?i)read[- ]only"):
            unit.execute(raw_insert(backend))
        unit.rollback()


# -- durable ------------------------------------------------------------------------------------


def test_a_durable_unit_inside_another_unit_is_refused(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as outer:
        outer.repository(User).add(User(id="1", name="ann"))
        inner = flavour.unit(durable=True)
        with pytest.raises(uow.StateError, match="outermost"), inner:
            pass
        assert not inner.active
        outer.commit()

    assert backend.users() == [("1", "ann")]


def test_a_durable_unit_on_its_own_commits(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit(durable=True) as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()
    with flavour.unit(durable=True) as unit:  # the first one no longer counts once it ended
        unit.repository(User).add(User(id="2", name="ben"))
        unit.commit()

    assert backend.users() == [("1", "ann"), ("2", "ben")]


def test_a_plain_unit_may_nest_inside_another(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as outer, flavour.unit() as inner:
        inner.repository(User).add(User(id="1", name="inner"))
        inner.commit()
        outer.rollback()

    assert backend.users() == [("1", "inner")]
