"""Recording messages: a message is committed exactly when the unit's work is, and never otherwise."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select

import uow
from tests.conftest import Backend
from tests.drivers import Flavour
from tests.outbox.conftest import Tables
from tests.outbox.models import OUTBOX, Shipment
from tests.test_session_transactions import begin_nested
from uow.outbox import PENDING, Outbox

outbox = Outbox(OUTBOX)


class Boom(Exception):
    pass


def test_a_committed_unit_commits_its_messages_with_their_ids_in_recording_order(
    flavour: Flavour, tables: Tables
) -> None:
    with flavour.unit() as unit:
        unit.session.add(Shipment(address="Main Street 1"))
        first = outbox.add(unit, "shipments.created", {"address": "Main Street 1"}, key="s-1")
        second = outbox.add(unit, "shipments.noted", b"\x00raw", headers={"trace": "abc"})
        assert tables.rows() == []
        unit.commit()

    rows = tables.rows()
    assert [(row.id, row.topic, row.key) for row in rows] == [
        (first, "shipments.created", "s-1"),
        (second, "shipments.noted", None),
    ]
    assert json.loads(rows[0].payload) == {"address": "Main Street 1"}
    assert bytes(rows[1].payload) == b"\x00raw"
    assert rows[1].headers == {"trace": "abc"}
    assert {(row.state, row.attempts, row.sent_at) for row in rows} == {(PENDING, 0, None)}
    assert all(row.next_attempt_at == row.created_at for row in rows)


def test_every_message_gets_a_new_random_uuid_unless_given_one(flavour: Flavour, tables: Tables) -> None:
    chosen = uuid.uuid4()
    with flavour.unit() as unit:
        generated = [outbox.add(unit, "t", b"") for _ in range(3)]
        given = outbox.add(unit, "t", b"", id=chosen)
        unit.commit()

    assert given == chosen
    assert len(set(generated)) == 3
    assert [row.id for row in tables.rows()] == [*generated, chosen]


def test_a_rolled_back_unit_leaves_no_message(flavour: Flavour, tables: Tables) -> None:
    with flavour.unit() as unit:
        outbox.add(unit, "gone", b"")
        unit.flush()
        unit.rollback()
        kept = outbox.add(unit, "kept", b"")
        unit.commit()

    assert [row.id for row in tables.rows()] == [kept]


def test_an_exception_in_the_block_leaves_no_message(flavour: Flavour, tables: Tables) -> None:
    with pytest.raises(Boom), flavour.unit() as unit:
        outbox.add(unit, "gone", b"")
        unit.flush()
        raise Boom

    assert tables.rows() == []


def test_a_block_left_without_commit_leaves_no_message_and_warns(flavour: Flavour, tables: Tables) -> None:
    with pytest.warns(uow.UncommittedWorkWarning, match="1 new object"), flavour.unit() as unit:
        outbox.add(unit, "gone", b"")

    assert tables.rows() == []


def test_a_rolled_back_savepoint_leaves_no_message_and_keeps_the_others(
    flavour: Flavour, tables: Tables
) -> None:
    with flavour.unit() as unit:
        outbox.add(unit, "before", b"")
        with pytest.raises(Boom), unit.savepoint():
            outbox.add(unit, "inside, flushed", b"")
            unit.flush()
            outbox.add(unit, "inside, pending", b"")
            raise Boom
        with unit.savepoint():
            outbox.add(unit, "released", b"")
        outbox.add(unit, "after", b"")
        unit.commit()

    assert tables.topics() == ["before", "released", "after"]


def test_a_rolled_back_begin_nested_leaves_no_message(flavour: Flavour, tables: Tables) -> None:
    with flavour.unit() as unit:
        outbox.add(unit, "before", b"")
        with pytest.raises(Boom), begin_nested(flavour, unit):
            outbox.add(unit, "inside", b"")
            unit.flush()
            raise Boom
        with begin_nested(flavour, unit):
            outbox.add(unit, "released", b"")
        unit.commit()

    assert tables.topics() == ["before", "released"]


def test_a_message_can_be_recorded_through_a_plain_session(flavour: Flavour, tables: Tables) -> None:
    session = flavour.session_factory()
    try:
        outbox.add(session, "plain", "text")
        flavour.run(session.commit())
    finally:
        flavour.run(session.close())

    assert [(row.topic, bytes(row.payload)) for row in tables.rows()] == [("plain", b"text")]


@pytest.mark.parametrize(
    ("payload", "stored"),
    [
        (b"bytes", b"bytes"),
        (bytearray(b"array"), b"array"),
        ("tést", "tést".encode()),
        ({"b": [1, 2.5, None, True], "a": "é"}, '{"b":[1,2.5,null,true],"a":"é"}'.encode()),
    ],
)
def test_payloads_are_stored_as_bytes_as_is_as_utf8_or_as_compact_json(
    payload: object, stored: bytes, flavour: Flavour, tables: Tables
) -> None:
    with flavour.unit() as unit:
        outbox.add(unit, "t", payload)
        unit.commit()

    assert [bytes(row.payload) for row in tables.rows()] == [stored]


def test_a_serializer_of_ones_own_encodes_the_payloads(flavour: Flavour, tables: Tables) -> None:
    custom = Outbox(OUTBOX, serializer=lambda payload: repr(payload).encode())
    with flavour.unit() as unit:
        custom.add(unit, "t", {1, 2})
        unit.commit()

    assert [bytes(row.payload) for row in tables.rows()] == [b"{1, 2}"]


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"topic": ""}, "topic must be"),
        ({"topic": "t" * 256}, "topic must be"),
        ({"key": "k" * 256}, "key must be"),
        ({"key": 7}, "key must be"),
        ({"headers": {"n": 1}}, "headers must map str to str"),
        ({"payload": object()}, "cannot encode a object payload"),
        ({"id": "not-a-uuid"}, "id must be a uuid.UUID"),
    ],
)
def test_a_message_that_cannot_be_stored_is_refused_when_added(
    arguments: dict[str, Any], complaint: str, flavour: Flavour, tables: Tables
) -> None:
    call = {"topic": "t", "payload": b"", **arguments}
    with flavour.unit() as unit:
        with pytest.raises(uow.InvalidArgumentError, match=complaint):
            outbox.add(unit, call.pop("topic"), call.pop("payload"), **call)
        unit.commit()

    assert tables.rows() == []


def test_adding_outside_the_units_block_raises_a_state_error(flavour: Flavour, tables: Tables) -> None:
    unit = flavour.unit()
    with pytest.raises(uow.StateError, match="needs an active unit"):
        outbox.add(unit.real, "t", b"")


def test_an_outbox_needs_the_columns_of_the_outbox_table(backend: Backend) -> None:
    from sqlalchemy import Column, Integer, MetaData, Table

    with pytest.raises(uow.InvalidArgumentError, match="lacks the column"):
        Outbox(Table("not_an_outbox", MetaData(), Column("position", Integer, primary_key=True)))


def test_committed_messages_are_visible_to_the_next_unit(flavour: Flavour, tables: Tables) -> None:
    with flavour.unit() as unit:
        recorded = outbox.add(unit, "t", b"")
        unit.commit()
    with flavour.unit() as unit:
        found = flavour.run(unit.session.execute(select(OUTBOX.c.id)))
        assert list(found.scalars()) == [recorded]
        unit.rollback()


# -- PostgreSQL NOTIFY ----------------------------------------------------------------------------

POSTGRESQL = pytest.mark.parametrize("backend_setup", ["postgresql"], indirect=True)


@contextmanager
def listening(backend: Backend, channel: str) -> Iterator[Callable[[], list[str]]]:
    """A connection of its own that LISTENs on `channel`; the callable returns what arrived since."""
    import psycopg

    arguments = backend.check.dialect.create_connect_args(backend.check.url)[1]
    arguments.pop("context", None)
    with psycopg.connect(**arguments, autocommit=True) as connection:
        connection.execute(f'LISTEN "{channel}"')

        def received() -> list[str]:
            return [notify.channel for notify in connection.notifies(timeout=0.3)]

        yield received


@POSTGRESQL
def test_on_postgresql_a_commit_with_messages_notifies_the_outboxs_channel(
    flavour: Flavour, tables: Tables
) -> None:
    with listening(tables.backend, "uow_outbox") as received:
        with flavour.unit() as unit:
            outbox.add(unit, "first", b"")
            unit.flush()
            outbox.add(unit, "second", b"")
            unit.flush()
            assert received() == []
            unit.commit()
        assert received() == ["uow_outbox"]


@POSTGRESQL
def test_on_postgresql_rolled_back_messages_notify_nobody(flavour: Flavour, tables: Tables) -> None:
    with listening(tables.backend, "uow_outbox") as received:
        with flavour.unit() as unit:
            outbox.add(unit, "gone", b"")
            unit.flush()
            unit.rollback()
            with pytest.raises(Boom), unit.savepoint():
                outbox.add(unit, "gone too", b"")
                unit.flush()
                raise Boom
            unit.commit()
        assert received() == []


@POSTGRESQL
def test_on_postgresql_a_message_after_a_rolled_back_savepoint_still_notifies(
    flavour: Flavour, tables: Tables
) -> None:
    with listening(tables.backend, "uow_outbox") as received:
        with flavour.unit() as unit:
            with pytest.raises(Boom), unit.savepoint():
                outbox.add(unit, "gone", b"")
                unit.flush()
                raise Boom
            outbox.add(unit, "kept", b"")
            unit.commit()
        assert received() == ["uow_outbox"]


@POSTGRESQL
def test_an_outbox_made_with_notify_false_sends_no_notification(flavour: Flavour, tables: Tables) -> None:
    quiet = Outbox(OUTBOX, notify=False)
    try:
        with listening(tables.backend, "uow_outbox") as received:
            with flavour.unit() as unit:
                quiet.add(unit, "t", b"")
                unit.commit()
            assert received() == []
            assert quiet.channel is None
    finally:
        Outbox(OUTBOX)  # the table's setting, back as the other specifications expect it
