"""The contract: what a unit and its repositories do, checked on the in-memory unit and the real ones.

Every specification here runs on ``memory-sync`` and ``memory-async`` and on the real units of every
backend in both flavours, so the fake cannot drift from the real thing. What was committed is read
around the unit under test: through the store, or through a separate connection.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import not_, or_

import uow
from tests.models import Account, AsyncUserRepository, User, UserRepository
from tests.testing.world import World

ACCOUNTS = [
    (1, "ann", 30, "ann@example.org"),
    (2, "ben", 10, None),
    (3, "cat", 20, "cat@example.org"),
    (4, "dan", 10, None),
    (5, "eve", 50, "eve@example.org"),
]


@pytest.fixture
def accounts(world: World) -> World:
    world.insert(*(Account(id=i, owner=o, balance=b, email=e) for i, o, b, e in ACCOUNTS))
    return world


def ids(found: list[Account]) -> list[int]:
    return [account.id for account in found]


def user_repository_class(world: World) -> type[Any]:
    return AsyncUserRepository if world.is_async else UserRepository


# -- commit and rollback --------------------------------------------------------------------------


def test_commit_makes_the_work_visible_to_later_units(world: World) -> None:
    with world.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()

    with world.unit() as unit:
        assert unit.repository(User).get_one("1").name == "ann"
    assert world.users() == [("1", "ann")]


def test_rollback_undoes_changes_already_flushed_by_a_read(world: World) -> None:
    with world.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="1", name="ann"))
        assert users.count() == 1
        unit.rollback()
        assert users.count() == 0
        unit.commit()

    assert world.users() == []


def test_rollback_restores_the_committed_values_of_loaded_objects(world: World) -> None:
    world.insert(User(id="1", name="ann"))
    with world.unit() as unit:
        users = unit.repository(User)
        users.get_one("1").name = "anne"
        unit.rollback()
        assert users.get_one("1").name == "ann"


def test_an_object_changed_after_add_is_stored_as_it_is_at_commit(world: World) -> None:
    with world.unit() as unit:
        ann = unit.repository(User).add(User(id="1", name="ann"))
        ann.name = "anne"
        unit.commit()

    assert world.users() == [("1", "anne")]


def test_a_change_made_after_commit_is_committed_by_the_next_commit_only(world: World) -> None:
    with world.unit() as unit:
        ann = unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()
        ann.name = "anne"
        assert world.users() == [("1", "ann")]
        unit.commit()

    assert world.users() == [("1", "anne")]


def test_changing_an_object_after_its_block_changes_nothing_stored(world: World) -> None:
    with world.unit() as unit:
        ann = unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()
    ann.name = "anne"

    with world.unit() as unit:
        assert unit.repository(User).get_one("1").name == "ann"
    assert world.users() == [("1", "ann")]


def test_each_block_loads_its_own_copy_of_an_object(world: World) -> None:
    world.insert(User(id="1", name="ann"))
    with world.unit() as unit:
        first = unit.repository(User).get_one("1")
    with world.unit() as unit:
        second = unit.repository(User).get_one("1")

    assert first is not second
    assert (first.id, first.name) == (second.id, second.name)


# -- integrity errors -----------------------------------------------------------------------------


def test_adding_a_row_that_already_exists_raises_duplicate_key(world: World) -> None:
    world.insert(User(id="5", name="bob"))
    with world.unit() as unit:
        unit.repository(User).add(User(id="5", name="lily"))
        with pytest.raises(uow.DuplicateKeyError):
            unit.commit()

    assert world.users() == [("5", "bob")]


def test_after_a_failed_flush_reads_are_refused_until_rollback(world: World) -> None:
    world.insert(User(id="1", name="ann"))
    with world.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="1", name="twin"))
        with pytest.raises(uow.DuplicateKeyError):
            users.count()
        with pytest.raises(sqlalchemy.exc.PendingRollbackError):
            users.count()
        unit.rollback()
        assert users.count() == 1


def test_after_a_caught_statement_failure_commit_is_refused_until_rollback(world: World) -> None:
    world.insert(User(id="1", name="ann"))
    with world.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="2", name="ben"))
        with pytest.raises(uow.DuplicateKeyError):
            users.insert_many([{"id": "1", "name": "twin"}])
        with pytest.raises(uow.StateError, match="only part of the work"):
            unit.commit()
        unit.rollback()
        users.add(User(id="3", name="cat"))
        unit.commit()

    assert world.users() == [("1", "ann"), ("3", "cat")]


# -- leaving the block ----------------------------------------------------------------------------


def test_leaving_without_commit_discards_changes_and_warns(world: World) -> None:
    with pytest.warns(uow.UncommittedWorkWarning, match=r"1 new object"), world.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))

    assert world.users() == []


def test_leaving_after_a_flush_without_commit_warns_about_flushed_changes(world: World) -> None:
    with pytest.warns(uow.UncommittedWorkWarning, match="flushed"), world.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="1", name="ann"))
        users.count()

    assert world.users() == []


def test_leaving_after_insert_many_without_commit_warns(world: World) -> None:
    with pytest.warns(uow.UncommittedWorkWarning, match="flushed"), world.unit() as unit:
        unit.repository(User).insert_many([{"id": "1", "name": "ann"}])

    assert world.users() == []


OUTSIDE_CALLS = {
    "commit": lambda unit: unit.commit(),
    "rollback": lambda unit: unit.rollback(),
    "repository": lambda unit: unit.repository(User),
}


@pytest.mark.parametrize("call", OUTSIDE_CALLS)
def test_using_a_unit_outside_its_block_raises_state_error(world: World, call: str) -> None:
    unit = world.unit()
    with pytest.raises(uow.StateError, match=r"inside 'with unit:'"):
        OUTSIDE_CALLS[call](unit)
    with unit:
        pass
    with pytest.raises(uow.StateError, match=f"{call}.*needs an active unit of work"):
        OUTSIDE_CALLS[call](unit)


def test_a_unit_can_be_entered_again_after_its_block(world: World) -> None:
    unit = world.unit()
    assert not unit.active
    with unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()
    assert not unit.active
    with unit:
        unit.repository(User).add(User(id="2", name="ben"))
        unit.commit()

    assert world.users() == [("1", "ann"), ("2", "ben")]


def test_a_unit_gives_the_same_repository_for_the_same_target_within_a_block(world: World) -> None:
    cls = user_repository_class(world)
    with world.unit() as unit:
        first = unit.real.repository(User)
        assert unit.real.repository(User) is first
        assert unit.real.repository(cls) is unit.real.repository(cls)
        assert unit.real.repository(Account) is not first
        assert first.model is User
    with world.unit() as unit:
        assert unit.real.repository(User) is not first


def test_a_repository_subclass_keeps_its_own_queries(world: World) -> None:
    world.insert(User(id="1", name="ann"), User(id="2", name="ben"), User(id="3", name="ann"))
    cls = user_repository_class(world)
    with world.unit() as unit:
        users = unit.repository(cls)
        assert isinstance(users.real, cls)
        assert users.model is User
        assert [user.id for user in users.named("ann")] == ["1", "3"]


def test_add_returns_the_object_and_add_all_a_list(world: World) -> None:
    ann = User(id="1", name="ann")
    with world.unit() as unit:
        users = unit.repository(User)
        assert users.add(ann) is ann
        added = users.add_all(User(id=str(i), name=f"u{i}") for i in range(2, 4))
        assert [user.id for user in added] == ["2", "3"]
        unit.commit()

    assert world.users() == [("1", "ann"), ("2", "u2"), ("3", "u3")]


def test_an_object_from_an_earlier_block_can_be_removed_in_a_later_one(world: World) -> None:
    world.insert(User(id="1", name="ann"))
    with world.unit() as unit:
        ann = unit.repository(User).get_one("1")
    with world.unit() as unit:
        unit.repository(User).remove(ann)
        unit.commit()

    assert world.users() == []


def test_insert_many_inserts_rows_and_applies_column_defaults(world: World) -> None:
    rows = [{"id": i, "owner": f"owner{i}"} for i in range(1, 4)]
    with world.unit() as unit:
        assert unit.repository(Account).insert_many(iter(rows)) == 3
        unit.commit()

    assert world.accounts() == [(1, "owner1", 0), (2, "owner2", 0), (3, "owner3", 0)]


def test_insert_many_with_an_unknown_field_inserts_nothing(world: World) -> None:
    with world.unit() as unit:
        with pytest.raises(uow.InvalidFieldError, match="User"):
            unit.repository(User).insert_many([{"id": "1", "name": "ann"}, {"id": "2", "nom": "x"}])
        unit.commit()

    assert world.users() == []


def test_reads_see_the_units_own_pending_work(world: World) -> None:
    world.insert(User(id="1", name="ann"), User(id="2", name="ben"))
    with world.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="3", name="cat"))
        users.remove(users.get_one("1"))
        users.get_one("2").name = "bea"
        assert [(user.id, user.name) for user in users.list(order_by="id")] == [("2", "bea"), ("3", "cat")]
        unit.rollback()


# -- reads ----------------------------------------------------------------------------------------


def test_get_returns_the_object_with_that_primary_key_or_none(accounts: World) -> None:
    with accounts.unit() as unit:
        account = unit.repository(Account).get(3)
        assert account is not None
        assert (account.id, account.owner) == (3, "cat")
        assert unit.repository(Account).get(99) is None


def test_one_primary_key_gives_the_same_object_within_a_block(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        first = repository.get_one(1)
        assert repository.get(1) is first
        assert repository.one(owner="ann") is first
        assert repository.list(order_by="id")[0] is first


def test_list_filters_by_keyword_equality_and_none_matches_null(accounts: World) -> None:
    with accounts.unit() as unit:
        assert ids(unit.repository(Account).list(balance=10, order_by="id")) == [2, 4]
        assert ids(unit.repository(Account).list(email=None, order_by="id")) == [2, 4]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ((Account.balance >= 20, Account.id < 5), [1, 3]),
        ((Account.balance != 10,), [1, 3, 5]),
        ((Account.email != "ann@example.org",), [3, 5]),
        ((Account.id.in_([2, 5, 9]),), [2, 5]),
        ((Account.id.not_in([2, 5]),), [1, 3, 4]),
        ((Account.id.in_([]),), []),
        ((Account.email.is_(None),), [2, 4]),
        ((Account.email.is_not(None),), [1, 3, 5]),
        ((Account.owner.like("%a%"),), [1, 3, 4]),
        ((Account.owner.like("_e_"),), [2]),
        ((Account.owner.startswith("e"),), [5]),
        ((Account.owner.endswith("n"),), [1, 2, 4]),
        ((Account.email.contains("cat"),), [3]),
        ((or_(Account.id == 1, Account.balance == 50),), [1, 5]),
        ((not_(Account.balance > 15),), [2, 4]),
        ((not_(Account.email == "ann@example.org"),), [3, 5]),
        ((sqlalchemy.true(),), [1, 2, 3, 4, 5]),
    ],
    ids=str,
)
def test_list_filters_by_column_comparisons_with_sql_semantics(
    accounts: World, where: tuple[Any, ...], expected: list[int]
) -> None:
    with accounts.unit() as unit:
        assert ids(unit.repository(Account).list(*where, order_by="id")) == expected


def test_one_returns_the_only_match_or_raises(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        assert repository.one(owner="cat").id == 3
        with pytest.raises(uow.NotFoundError, match=r"^no Account found for owner=\?$"):
            repository.one(owner="nobody")
        with pytest.raises(uow.MultipleResultsError, match=r"Account.*balance=\?"):
            repository.one(balance=10)


def test_stream_yields_every_match_in_order(accounts: World) -> None:
    with accounts.unit() as unit:
        streamed = list(unit.repository(Account).stream(Account.balance < 40, order_by="-id", batch_size=2))

    assert ids(streamed) == [4, 3, 2, 1]


# -- refused input --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nope", "tags", "__class__", "_sa_instance_state", "id; DROP TABLE x"])
def test_a_field_name_that_is_not_a_mapped_column_is_refused(accounts: World, name: str) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        for call in (
            lambda: repository.list(**{name: 1}),
            lambda: repository.count(**{name: 1}),
            lambda: repository.list(order_by=name),
            lambda: repository.insert_many([{name: 1}]),
        ):
            with pytest.raises(uow.InvalidFieldError) as caught:
                call()
            assert caught.value.field == name

    assert len(accounts.accounts()) == 5


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"limit": -1}, "limit"),
        ({"offset": True}, "offset"),
        ({"limit": 1.5}, "limit"),
        ({"order_by": 1}, "order_by"),
        ({"order_by": [object()]}, "order_by"),
    ],
    ids=str,
)
def test_an_argument_that_cannot_become_a_query_is_refused(
    accounts: World, arguments: dict[str, Any], match: str
) -> None:
    with accounts.unit() as unit, pytest.raises(uow.InvalidArgumentError, match=match):
        unit.repository(Account).list(**arguments)


def test_a_stream_batch_size_that_is_not_positive_is_refused(accounts: World) -> None:
    with accounts.unit() as unit:
        for bad in (0, -1, True):
            with pytest.raises(uow.InvalidArgumentError, match="batch_size"):
                unit.repository(Account).stream(batch_size=bad)
