"""After-commit and after-rollback hooks, and domain events handed to a dispatcher after commit."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

import uow
from tests.conftest import Backend
from tests.drivers import Flavour
from tests.models import Account, User
from tests.test_unit_semantics import failing_session_rollbacks


class Boom(Exception):
    pass


def recorder(flavour: Flavour, calls: list[str], name: str, fail: bool = False) -> Callable[[], Any]:
    def hook() -> None:
        calls.append(name)
        if fail:
            raise Boom(name)

    return flavour.hook(hook)


# -- on_commit ----------------------------------------------------------------------------------


def test_on_commit_hooks_run_once_after_the_commit_in_registration_order(
    flavour: Flavour, backend: Backend
) -> None:
    calls: list[str] = []
    seen_by_hook: list[list[tuple[str, str | None]]] = []
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.on_commit(recorder(flavour, calls, "first"))
        unit.on_commit(flavour.hook(lambda: seen_by_hook.append(backend.users())))
        unit.on_commit(recorder(flavour, calls, "second"))
        assert calls == []
        unit.commit()
        assert calls == ["first", "second"]
        unit.commit()  # nothing new: the hooks ran exactly once

    assert calls == ["first", "second"]
    assert seen_by_hook == [[("1", "ann")]]


def test_on_commit_hooks_are_dropped_by_a_rollback(flavour: Flavour, backend: Backend) -> None:
    calls: list[str] = []
    with flavour.unit() as unit:
        unit.on_commit(recorder(flavour, calls, "dropped"))
        unit.rollback()
        unit.commit()

    assert calls == []


def test_on_commit_hooks_are_dropped_when_the_block_ends_without_commit(
    flavour: Flavour, backend: Backend
) -> None:
    calls: list[str] = []
    with flavour.unit() as unit:
        unit.on_commit(recorder(flavour, calls, "dropped"))

    assert calls == []


def test_on_commit_hooks_of_a_rolled_back_savepoint_are_dropped_and_of_a_released_one_kept(
    flavour: Flavour, backend: Backend
) -> None:
    calls: list[str] = []
    with flavour.unit() as unit:
        with unit.savepoint():
            unit.on_commit(recorder(flavour, calls, "released"))
        with pytest.raises(Boom), unit.savepoint():
            unit.on_commit(recorder(flavour, calls, "rolled back"))
            raise Boom
        unit.commit()

    assert calls == ["released"]


def test_a_failing_hook_keeps_the_commit_and_the_later_hooks_and_is_raised_after_them(
    flavour: Flavour, backend: Backend
) -> None:
    calls: list[str] = []
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.on_commit(recorder(flavour, calls, "a", fail=True))
        unit.on_commit(recorder(flavour, calls, "b"))
        unit.on_commit(recorder(flavour, calls, "c", fail=True))
        with pytest.raises(uow.HookError, match="IS committed") as caught:
            unit.commit()

    assert calls == ["a", "b", "c"]
    assert [str(error) for error in caught.value.exceptions] == ["a", "c"]
    assert caught.value.committed is True
    assert backend.users() == [("1", "ann")]


def test_a_robust_hook_failure_is_logged_not_raised(
    flavour: Flavour, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    with caplog.at_level(logging.ERROR, logger="uow"), flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.on_commit(recorder(flavour, calls, "robust", fail=True), robust=True)
        unit.on_commit(recorder(flavour, calls, "next"))
        unit.commit()

    assert calls == ["robust", "next"]
    assert any("robust" in record.getMessage() and record.exc_info for record in caplog.records)
    assert backend.users() == [("1", "ann")]


def own_unit_writer(flavour: Flavour, **options: Any) -> Callable[[str], Any]:
    """Something a hook or handler does: commit a user in a durable unit of its own."""
    if not flavour.is_async:

        def write(user_id: str) -> None:
            with uow.UnitOfWork(flavour.session_factory, **options) as other:
                other.repository(User).add(User(id=user_id, name="own unit"))
                other.commit()

        return write

    async def write_async(user_id: str) -> None:
        async with uow.AsyncUnitOfWork(flavour.session_factory, **options) as other:
            await other.repository(User).add(User(id=user_id, name="own unit"))
            await other.commit()

    return write_async


def test_a_hook_may_run_a_durable_unit_of_its_own(flavour: Flavour, backend: Backend) -> None:
    write = own_unit_writer(flavour, durable=True)
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.on_commit(lambda: write("2"))
        unit.commit()

    assert backend.users() == [("1", "ann"), ("2", "own unit")]


def test_hooks_must_be_callable(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit, pytest.raises(uow.InvalidArgumentError, match="callable"):
        unit.on_commit("not a function")  # type: ignore[arg-type]


def test_a_sync_unit_refuses_coroutine_hooks(backend: Backend) -> None:
    async def hook() -> None:
        pass

    from sqlalchemy.orm import sessionmaker

    with uow.UnitOfWork(sessionmaker(backend.check)) as unit:
        with pytest.raises(uow.InvalidArgumentError, match="AsyncUnitOfWork"):
            unit.on_commit(hook)
        with pytest.raises(uow.InvalidArgumentError, match="AsyncUnitOfWork"):
            unit.on_rollback(hook)


def test_hooks_outside_a_block_raise_state_error(flavour: Flavour, backend: Backend) -> None:
    unit = flavour.unit()
    with pytest.raises(uow.StateError):
        unit.on_commit(lambda: None)
    with pytest.raises(uow.StateError):
        unit.on_rollback(lambda: None)


# -- on_rollback --------------------------------------------------------------------------------


def test_on_rollback_hooks_run_on_rollback_and_are_dropped_by_commit(
    flavour: Flavour, backend: Backend
) -> None:
    calls: list[str] = []
    with flavour.unit() as unit:
        unit.on_rollback(recorder(flavour, calls, "committed work"))
        unit.commit()
        unit.on_rollback(recorder(flavour, calls, "rolled back work"))
        unit.rollback()

    assert calls == ["rolled back work"]


def test_on_rollback_hooks_run_when_the_block_ends_without_commit(flavour: Flavour, backend: Backend) -> None:
    calls: list[str] = []
    with flavour.unit() as unit:
        unit.on_rollback(recorder(flavour, calls, "cleanup"))

    assert calls == ["cleanup"]


def test_on_rollback_hooks_run_when_an_exception_ends_the_block(flavour: Flavour, backend: Backend) -> None:
    calls: list[str] = []
    with pytest.raises(Boom), flavour.unit() as unit:
        unit.on_rollback(recorder(flavour, calls, "cleanup"))
        raise Boom

    assert calls == ["cleanup"]


def test_on_rollback_hooks_run_when_the_commit_fails(flavour: Flavour, backend: Backend) -> None:
    calls: list[str] = []
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.repository(User).add(User(id="1", name="twin"))
        unit.on_rollback(recorder(flavour, calls, "cleanup"))
        with pytest.raises(uow.DuplicateKeyError):
            unit.commit()
        assert calls == ["cleanup"]

    assert calls == ["cleanup"]


def test_on_rollback_hooks_of_a_savepoint_run_when_only_it_rolls_back(
    flavour: Flavour, backend: Backend
) -> None:
    calls: list[str] = []
    with flavour.unit() as unit:
        unit.on_rollback(recorder(flavour, calls, "unit"))
        with pytest.raises(Boom), unit.savepoint():
            unit.on_rollback(recorder(flavour, calls, "savepoint"))
            raise Boom
        assert calls == ["savepoint"]
        unit.commit()

    assert calls == ["savepoint"]


def test_a_failing_rollback_hook_does_not_replace_the_exception_ending_the_block(
    flavour: Flavour, backend: Backend
) -> None:
    error = Boom("the user's error")
    with pytest.raises(Boom) as caught, flavour.unit() as unit:
        unit.on_rollback(recorder(flavour, [], "cleanup", fail=True))
        raise error

    assert caught.value is error
    assert any("after-rollback hook" in note for note in error.__notes__)


def test_a_failing_rollback_hook_is_raised_after_an_explicit_rollback(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        unit.on_rollback(recorder(flavour, [], "cleanup", fail=True))
        with pytest.raises(uow.HookError, match="rolled back") as caught:
            unit.rollback()
    assert caught.value.committed is False


# -- domain events ------------------------------------------------------------------------------


def dispatcher(flavour: Flavour, received: list[Any], *, fail_on: object = None) -> Callable[[Any], Any]:
    def handle(event: Any) -> None:
        received.append(event)
        if event == fail_on:
            raise Boom(event)

    if not flavour.is_async:
        return handle

    async def handle_async(event: Any) -> None:
        handle(event)

    return handle_async


def test_events_are_dispatched_after_commit_in_recording_order_across_entities(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(Account(id=1, owner="ann", balance=10))
    received: list[Any] = []
    with flavour.unit(dispatch=dispatcher(flavour, received)) as unit:
        accounts = unit.repository(Account)
        ann = accounts.get_one(1)
        ben = accounts.add(Account(id=2, owner="ben"))
        ann.record_event("ann debited")
        ben.record_event("ben credited")
        ann.record_event("ann notified")
        assert received == []
        unit.commit()

    assert received == ["ann debited", "ben credited", "ann notified"]
    assert ann.recorded_events == []


def test_events_are_dispatched_once(flavour: Flavour, backend: Backend) -> None:
    received: list[Any] = []
    with flavour.unit(dispatch=dispatcher(flavour, received)) as unit:
        unit.repository(Account).add(Account(id=1, owner="ann")).record_event("opened")
        unit.commit()
        unit.commit()

    assert received == ["opened"]


def test_events_of_rolled_back_work_are_dropped(flavour: Flavour, backend: Backend) -> None:
    backend.insert(Account(id=1, owner="ann"))
    received: list[Any] = []
    with flavour.unit(dispatch=dispatcher(flavour, received)) as unit:
        ann = unit.repository(Account).get_one(1)
        ann.record_event("rolled back")
        unit.rollback()
        ann = unit.repository(Account).get_one(1)
        ann.record_event("kept")
        unit.commit()

    assert received == ["kept"]


def test_events_of_a_rolled_back_savepoint_are_dropped(flavour: Flavour, backend: Backend) -> None:
    backend.insert(Account(id=1, owner="ann"))
    received: list[Any] = []
    with flavour.unit(dispatch=dispatcher(flavour, received)) as unit:
        ann = unit.repository(Account).get_one(1)
        ann.record_event("before")
        with pytest.raises(Boom), unit.savepoint():
            ann.record_event("inside, rolled back")
            unit.repository(Account).add(Account(id=2, owner="ben")).record_event("new, rolled back")
            raise Boom
        with unit.savepoint():
            ann.record_event("inside, released")
        unit.commit()

    assert received == ["before", "inside, released"]


def test_events_of_a_block_left_without_commit_are_dropped(flavour: Flavour, backend: Backend) -> None:
    received: list[Any] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", uow.UncommittedWorkWarning)
        with flavour.unit(dispatch=dispatcher(flavour, received)) as unit:
            account = unit.repository(Account).add(Account(id=1, owner="ann"))
            account.record_event("never")

    assert received == []
    assert account.recorded_events == []


def test_a_failing_handler_does_not_stop_the_others_and_the_data_is_committed(
    flavour: Flavour, backend: Backend
) -> None:
    received: list[Any] = []
    with flavour.unit(dispatch=dispatcher(flavour, received, fail_on="bad")) as unit:
        account = unit.repository(Account).add(Account(id=1, owner="ann"))
        account.record_event("bad")
        account.record_event("good")
        with pytest.raises(uow.HookError, match="IS committed"):
            unit.commit()

    assert received == ["bad", "good"]
    assert backend.accounts() == [(1, "ann", 0)]


def test_a_handler_may_run_a_unit_of_its_own(flavour: Flavour, backend: Backend) -> None:
    write = own_unit_writer(flavour)
    with flavour.unit(dispatch=lambda event: write(str(event))) as unit:
        unit.repository(Account).add(Account(id=1, owner="ann")).record_event(7)
        unit.commit()

    assert backend.users() == [("7", "own unit")]


def test_a_dispatcher_must_be_callable(flavour: Flavour, backend: Backend) -> None:
    with pytest.raises(uow.InvalidArgumentError, match="dispatch"):
        flavour.unit(dispatch="nope")


def test_a_failed_rollback_drops_the_transactions_on_commit_hooks(flavour: Flavour, backend: Backend) -> None:
    calls: list[str] = []
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.flush()
        unit.on_commit(recorder(flavour, calls, "belongs to rolled back work"))
        with failing_session_rollbacks(flavour), pytest.raises(RuntimeError, match="rollback failed"):
            unit.rollback()
        unit.commit()

    assert calls == []
    assert backend.users() == []


def test_an_interrupted_commit_does_not_run_rollback_hooks(
    flavour: Flavour, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    engine = getattr(flavour.engine, "sync_engine", flavour.engine)

    def interrupt(connection: Any) -> None:
        raise KeyboardInterrupt

    event.listen(engine, "commit", interrupt)
    try:
        with caplog.at_level(logging.WARNING, logger="uow"), pytest.raises(KeyboardInterrupt):  # noqa: SIM117
            with flavour.unit() as unit:
                unit.repository(User).add(User(id="1", name="ann"))
                unit.on_rollback(recorder(flavour, calls, "would claim a rollback"))
                unit.commit()
    finally:
        event.remove(engine, "commit", interrupt)

    assert calls == []
    assert any("outcome is unknown" in record.getMessage() for record in caplog.records)


def test_a_durable_unit_may_run_in_a_hook_of_an_explicit_rollback(flavour: Flavour, backend: Backend) -> None:
    write = own_unit_writer(flavour, durable=True)
    with flavour.unit() as unit:
        unit.on_rollback(lambda: write("9"))
        unit.rollback()

    assert backend.users() == [("9", "own unit")]


def test_a_sync_unit_refuses_a_coroutine_dispatcher(backend: Backend) -> None:
    async def handle(event: object) -> None:
        pass

    from sqlalchemy.orm import sessionmaker

    with pytest.raises(uow.InvalidArgumentError, match="AsyncUnitOfWork"):
        uow.UnitOfWork(sessionmaker(backend.check), dispatch=handle)
