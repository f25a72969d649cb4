"""Domain events into the outbox: recorded by entities, committed with their work, dropped with rollbacks."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from sqlalchemy import select

import uow
from tests.drivers import Flavour
from tests.outbox.conftest import Tables
from tests.outbox.models import OUTBOX, Shipment
from tests.test_session_transactions import begin_nested
from uow.outbox import Message, Outbox

outbox = Outbox(OUTBOX)


class Boom(Exception):
    pass


@dataclass
class Shipped:
    shipment: Shipment


@dataclass
class Internal:
    note: str


def to_message(event: object) -> Message | None:
    if isinstance(event, Shipped):
        return Message("shipments.shipped", {"id": event.shipment.id}, key=str(event.shipment.id))
    return None


def captured(flavour: Flavour) -> Flavour:
    outbox.capture_events(flavour.session_factory, to_message)
    return flavour


def test_events_of_a_committed_unit_become_messages_in_recording_order(
    flavour: Flavour, tables: Tables
) -> None:
    with captured(flavour).unit() as unit:
        first, second = Shipment(address="a"), Shipment(address="b")
        unit.session.add_all([first, second])
        second.record_event(Shipped(second))
        first.record_event(Shipped(first))
        unit.flush()
        ids = [second.id, first.id]
        unit.commit()
        assert second.recorded_events == []

    rows = tables.rows()
    assert [(row.topic, json.loads(row.payload), row.key) for row in rows] == [
        ("shipments.shipped", {"id": ids[0]}, str(ids[0])),
        ("shipments.shipped", {"id": ids[1]}, str(ids[1])),
    ]


def test_to_message_sees_the_keys_the_database_generated(flavour: Flavour, tables: Tables) -> None:
    with captured(flavour).unit() as unit:
        shipment = Shipment(address="a")
        shipment.record_event(Shipped(shipment))  # before it has a session or a key
        unit.session.add(shipment)
        unit.commit()
        generated = flavour.run(unit.session.scalar(select(Shipment.id)))

    assert generated is not None
    assert [json.loads(row.payload) for row in tables.rows()] == [{"id": generated}]


def test_events_of_a_rolled_back_unit_are_dropped(flavour: Flavour, tables: Tables) -> None:
    with captured(flavour).unit() as unit:
        shipment = Shipment(address="a")
        unit.session.add(shipment)
        unit.flush()
        shipment.record_event(Shipped(shipment))
        unit.rollback()
        unit.commit()

    assert tables.rows() == []
    assert shipment.recorded_events == []


def test_events_of_a_block_left_by_an_exception_are_dropped(flavour: Flavour, tables: Tables) -> None:
    with pytest.raises(Boom), captured(flavour).unit() as unit:
        shipment = Shipment(address="a")
        unit.session.add(shipment)
        unit.flush()
        shipment.record_event(Shipped(shipment))
        raise Boom

    assert tables.rows() == []
    assert shipment.recorded_events == []


@pytest.mark.parametrize("how", ["unit.savepoint()", "session.begin_nested()"])
def test_events_of_a_rolled_back_savepoint_are_dropped_and_the_others_kept(
    flavour: Flavour, tables: Tables, how: str
) -> None:
    with captured(flavour).unit() as unit:
        before, inside, after = (
            Shipment(address="before"),
            Shipment(address="inside"),
            Shipment(address="after"),
        )
        unit.session.add_all([before, inside, after])
        unit.flush()
        ids = [before.id, after.id]
        before.record_event(Shipped(before))
        block = unit.savepoint() if how == "unit.savepoint()" else begin_nested(flavour, unit)
        with pytest.raises(Boom), block:
            inside.record_event(Shipped(inside))
            raise Boom
        after.record_event(Shipped(after))
        unit.commit()

    assert [json.loads(row.payload)["id"] for row in tables.rows()] == ids


def test_events_of_a_released_savepoint_commit_with_the_unit(flavour: Flavour, tables: Tables) -> None:
    with captured(flavour).unit() as unit:
        shipment = Shipment(address="a")
        unit.session.add(shipment)
        with unit.savepoint():
            shipment.record_event(Shipped(shipment))
        generated = shipment.id
        unit.commit()

    assert [json.loads(row.payload) for row in tables.rows()] == [{"id": generated}]


def test_events_of_a_released_savepoint_are_dropped_when_the_unit_rolls_back(
    flavour: Flavour, tables: Tables
) -> None:
    with captured(flavour).unit() as unit:
        shipment = Shipment(address="a")
        unit.session.add(shipment)
        with unit.savepoint():
            shipment.record_event(Shipped(shipment))
        unit.rollback()

    assert tables.rows() == []


def test_events_for_which_to_message_returns_none_are_not_published(flavour: Flavour, tables: Tables) -> None:
    with captured(flavour).unit() as unit:
        shipment = Shipment(address="a")
        unit.session.add(shipment)
        shipment.record_event(Internal("no"))
        shipment.record_event(Shipped(shipment))
        unit.commit()

    assert tables.topics() == ["shipments.shipped"]


def test_message_events_need_no_to_message(flavour: Flavour, tables: Tables) -> None:
    outbox.capture_events(flavour.session_factory)
    with flavour.unit() as unit:
        shipment = Shipment(address="a")
        unit.session.add(shipment)
        shipment.record_event(Message("shipments.noted", "plain"))
        unit.commit()

    assert [(row.topic, bytes(row.payload)) for row in tables.rows()] == [("shipments.noted", b"plain")]


def test_a_commit_with_an_event_that_is_no_message_fails_and_commits_nothing(
    flavour: Flavour, tables: Tables
) -> None:
    outbox.capture_events(flavour.session_factory)
    with flavour.unit() as unit:
        shipment = Shipment(address="a")
        unit.session.add(shipment)
        shipment.record_event(Internal("no"))
        with pytest.raises(uow.InvalidArgumentError, match="cannot turn a Internal event into a message"):
            unit.commit()

    assert tables.rows() == []
    with tables.backend.check.connect() as connection:
        assert connection.scalar(Shipment.__table__.select().with_only_columns(Shipment.id)) is None


def test_explicit_messages_and_events_commit_together(flavour: Flavour, tables: Tables) -> None:
    with captured(flavour).unit() as unit:
        shipment = Shipment(address="a")
        unit.session.add(shipment)
        outbox.add(unit, "explicit", b"")
        shipment.record_event(Shipped(shipment))
        unit.commit()

    assert sorted(tables.topics()) == ["explicit", "shipments.shipped"]


def test_a_dispatcher_sees_none_of_the_captured_events(flavour: Flavour, tables: Tables) -> None:
    dispatched: list[object] = []
    with captured(flavour).unit(dispatch=dispatched.append) as unit:
        shipment = Shipment(address="a")
        unit.session.add(shipment)
        shipment.record_event(Shipped(shipment))
        unit.commit()

    assert dispatched == []
    assert tables.topics() == ["shipments.shipped"]


def test_sessions_of_other_factories_keep_their_events(flavour: Flavour, tables: Tables) -> None:
    dispatched: list[object] = []
    with flavour.unit(dispatch=dispatched.append) as unit:  # not captured
        shipment = Shipment(address="a")
        unit.session.add(shipment)
        shipment.record_event(Shipped(shipment))
        unit.commit()

    assert len(dispatched) == 1
    assert tables.rows() == []


def test_capture_events_needs_a_session_factory() -> None:
    with pytest.raises(uow.InvalidArgumentError, match="takes a sessionmaker or an async_sessionmaker"):
        outbox.capture_events(lambda: None)
