"""The inbox: a consumer applies each message once, however often it is delivered."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest

import uow
from tests.drivers import Flavour, UnitDriver
from tests.outbox.conftest import Tables
from tests.outbox.models import INBOX, Ledger
from uow.outbox import Inbox

inbox = Inbox(INBOX, consumer="billing")
SERVERS = pytest.mark.parametrize("backend_setup", ["postgresql", "mariadb"], indirect=True)


class Boom(Exception):
    pass


def accept(flavour: Flavour, unit: UnitDriver, message_id: Any, consumer: Inbox = inbox) -> bool:
    if flavour.is_async:
        return bool(flavour.run(consumer.accept_async(unit.real, message_id)))
    return consumer.accept(unit.real, message_id)


def handle(flavour: Flavour, message_id: Any, consumer: Inbox = inbox) -> bool:
    """A consumer's unit: record the message, apply its effect if it is new, commit."""
    with flavour.unit() as unit:
        applied = accept(flavour, unit, message_id, consumer)
        if applied:
            unit.session.add(Ledger(consumer=consumer.consumer, message_id=str(message_id)))
        unit.commit()
    return applied


def test_a_message_is_applied_the_first_time_and_skipped_every_time_after(
    flavour: Flavour, tables: Tables
) -> None:
    message_id = uuid.uuid4()

    assert [handle(flavour, message_id) for _ in range(3)] == [True, False, False]
    assert tables.ledger() == [str(message_id)]
    assert tables.inbox() == [("billing", str(message_id))]


def test_a_message_whose_unit_rolled_back_is_applied_when_it_comes_again(
    flavour: Flavour, tables: Tables
) -> None:
    with pytest.raises(Boom), flavour.unit() as unit:
        assert accept(flavour, unit, "m-1")
        unit.session.add(Ledger(consumer="billing", message_id="m-1"))
        raise Boom

    assert tables.inbox() == []
    assert handle(flavour, "m-1")
    assert tables.ledger() == ["m-1"]


def test_a_message_accepted_in_a_rolled_back_savepoint_can_be_accepted_again(
    flavour: Flavour, tables: Tables
) -> None:
    with flavour.unit() as unit:
        with pytest.raises(Boom), unit.savepoint():
            assert accept(flavour, unit, "m-1")
            raise Boom
        assert accept(flavour, unit, "m-1")
        assert not accept(flavour, unit, "m-1")
        unit.commit()

    assert tables.inbox() == [("billing", "m-1")]


def test_each_consumer_applies_the_message_once_for_itself(flavour: Flavour, tables: Tables) -> None:
    shipping = Inbox(INBOX, consumer="shipping")

    assert handle(flavour, "m-1")
    assert handle(flavour, "m-1", shipping)
    assert not handle(flavour, "m-1", shipping)
    assert tables.inbox() == [("billing", "m-1"), ("shipping", "m-1")]


def test_a_uuid_and_its_text_are_the_same_message(flavour: Flavour, tables: Tables) -> None:
    message_id = uuid.uuid4()

    assert handle(flavour, message_id)
    assert not handle(flavour, str(message_id))


def test_an_accepted_message_is_uncommitted_work(flavour: Flavour, tables: Tables) -> None:
    with pytest.warns(uow.UncommittedWorkWarning, match="flushed"), flavour.unit() as unit:
        accept(flavour, unit, "m-1")

    assert tables.inbox() == []


@pytest.mark.parametrize("message_id", ["", "x" * 256, 7])
def test_an_id_that_cannot_be_stored_is_refused(message_id: Any, flavour: Flavour, tables: Tables) -> None:
    with flavour.unit() as unit:
        with pytest.raises(uow.InvalidArgumentError, match="message_id must be"):
            accept(flavour, unit, message_id)
        unit.rollback()


@pytest.mark.parametrize("consumer", ["", "c" * 201])
def test_a_consumer_name_that_cannot_be_stored_is_refused(consumer: str) -> None:
    with pytest.raises(uow.InvalidArgumentError, match="consumer must be"):
        Inbox(INBOX, consumer=consumer)


def test_the_other_flavours_method_is_refused(flavour: Flavour, tables: Tables) -> None:
    with flavour.unit() as unit:
        if flavour.is_async:
            with pytest.raises(uow.InvalidArgumentError, match="await accept_async"):
                inbox.accept(unit.real, "m-1")
        else:
            with pytest.raises(uow.InvalidArgumentError, match="call accept"):
                asyncio.run(inbox.accept_async(unit.real, "m-1"))
        unit.rollback()


def test_accepting_outside_the_units_block_raises_a_state_error(flavour: Flavour, tables: Tables) -> None:
    with pytest.raises(uow.StateError, match="needs an active unit"):
        accept(flavour, flavour.unit(), "m-1")


@SERVERS
@pytest.mark.parametrize("flavour", ["sync"], indirect=True)
@pytest.mark.parametrize("first_commits", [True, False], ids=["first-commits", "first-rolls-back"])
def test_a_second_consumer_unit_waits_for_the_first_and_applies_only_what_it_did_not(
    flavour: Flavour, tables: Tables, first_commits: bool
) -> None:
    outcome: list[bool] = []
    with flavour.unit() as first:
        assert accept(flavour, first, "m-1")
        second = threading.Thread(target=lambda: outcome.append(handle(flavour, "m-1")))
        second.start()
        time.sleep(0.3)
        assert second.is_alive(), "the second unit did not wait for the first"
        if first_commits:
            first.session.add(Ledger(consumer="billing", message_id="m-1"))
            first.commit()
        else:
            first.rollback()
    second.join(10)

    assert outcome == [not first_commits]
    assert tables.ledger() == ["m-1"]
