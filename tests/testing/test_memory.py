"""What only the in-memory unit has to get right: its store, its copies, and what it refuses to guess."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import JSON, ForeignKey, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.orm.exc import StaleDataError

import uow
from tests.models import Account, User
from uow.testing import (
    AsyncInMemoryUnitOfWork,
    InMemoryRepository,
    InMemoryStore,
    InMemoryUnitOfWork,
    UnsupportedExpressionError,
)


class Base(DeclarativeBase):
    pass


class Item(Base):
    """Generated integer keys, a Python-side default, and a mutable value."""

    __tablename__ = "memory_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(20), default=lambda: "unnamed")
    sizes: Mapped[list[int]] = mapped_column(JSON, default=list)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("memory_item.id"))


@pytest.fixture
def store() -> InMemoryStore:
    store = InMemoryStore()
    store.insert(Account(id=1, owner="ann", balance=30), Account(id=2, owner="ben", balance=10))
    return store


# -- refusing what it cannot evaluate ---------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        Account.owner.in_(select(User.name)),
        func.lower(Account.owner) == "ann",
        User.name == "ann",
        Account.balance.between(5, 20),
        Account.balance + 1 > 20,
    ],
    ids=["subquery", "function", "another model", "between", "arithmetic"],
)
def test_a_filter_the_fake_cannot_evaluate_is_refused_never_guessed(store: InMemoryStore, where: Any) -> None:
    with InMemoryUnitOfWork(store) as unit:
        accounts = unit.repository(Account)
        for call in (accounts.list, accounts.count, accounts.exists, accounts.first):
            with pytest.raises(UnsupportedExpressionError, match="cannot evaluate the filter") as caught:
                call(where)
            assert isinstance(caught.value, uow.InvalidArgumentError)
            assert caught.value.model is Account


def test_a_sort_key_the_fake_cannot_evaluate_is_refused(store: InMemoryStore) -> None:
    with (
        InMemoryUnitOfWork(store) as unit,
        pytest.raises(UnsupportedExpressionError, match=r"sort key.*lower"),
    ):
        unit.repository(Account).list(order_by=func.lower(Account.owner))


def test_a_comparison_of_two_columns_is_evaluated(store: InMemoryStore) -> None:
    with InMemoryUnitOfWork(store) as unit:
        assert [a.id for a in unit.repository(Account).list(Account.balance > Account.id)] == [1, 2]


def test_null_sorts_first_ascending_and_last_descending_unless_told_otherwise() -> None:
    store = InMemoryStore()
    store.insert(Account(id=1, owner="a", email="x@y"), Account(id=2, owner="b"))
    with InMemoryUnitOfWork(store) as unit:
        accounts = unit.repository(Account)
        assert [a.id for a in accounts.list(order_by="email")] == [2, 1]
        assert [a.id for a in accounts.list(order_by="-email")] == [1, 2]
        assert [a.id for a in accounts.list(order_by=Account.email.asc().nulls_last())] == [1, 2]


def test_strings_compare_case_sensitively(store: InMemoryStore) -> None:
    with InMemoryUnitOfWork(store) as unit:
        accounts = unit.repository(Account)
        assert accounts.count(owner="ANN") == 0
        assert accounts.count(Account.owner.like("A%")) == 0
        assert accounts.count(Account.owner.ilike("A%")) == 1


# -- the store --------------------------------------------------------------------------------------


def test_units_see_the_commits_of_units_sharing_their_store_only(store: InMemoryStore) -> None:
    with InMemoryUnitOfWork(store) as unit:
        unit.repository(Account).add(Account(id=3, owner="cat"))
        unit.commit()

    with InMemoryUnitOfWork(store) as unit:
        assert unit.repository(Account).count() == 3
    with InMemoryUnitOfWork() as unit:
        assert unit.repository(Account).count() == 0


def test_sync_and_async_units_can_share_a_store(store: InMemoryStore) -> None:
    import asyncio

    async def read() -> int:
        async with AsyncInMemoryUnitOfWork(store) as unit:
            return await unit.repository(Account).count()

    assert asyncio.run(read()) == 2


def test_all_returns_copies_in_primary_key_order(store: InMemoryStore) -> None:
    copies = store.all(Account)
    copies[0].owner = "changed"

    assert [(a.id, a.owner) for a in store.all(Account)] == [(1, "ann"), (2, "ben")]


def test_insert_with_one_duplicate_inserts_nothing(store: InMemoryStore) -> None:
    with pytest.raises(uow.DuplicateKeyError):
        store.insert(Account(id=3, owner="cat"), Account(id=1, owner="twin"))

    assert [a.id for a in store.all(Account)] == [1, 2]


def test_clear_deletes_every_row(store: InMemoryStore) -> None:
    store.clear()

    assert store.all(Account) == []
    assert "empty" in repr(store)


def test_a_store_that_is_not_a_store_is_refused() -> None:
    with pytest.raises(uow.InvalidArgumentError, match="InMemoryStore"):
        InMemoryUnitOfWork("sqlite://")  # type: ignore[arg-type]


# -- values ----------------------------------------------------------------------------------------


def test_integer_keys_and_python_defaults_are_filled_in_at_flush_and_never_reused() -> None:
    store = InMemoryStore()
    with InMemoryUnitOfWork(store) as unit:
        first, second = unit.repository(Item).add_all([Item(), Item(label="two")])
        unit.commit()
        assert (first.id, first.label, first.sizes) == (1, "unnamed", [])
        assert (second.id, second.label) == (2, "two")
        unit.repository(Item).remove(second)
        unit.commit()
    with InMemoryUnitOfWork(store) as unit:
        assert unit.repository(Item).add(Item()).id is None
        unit.commit()
        assert unit.repository(Item).get_one(3).label == "unnamed"


def test_mutable_values_are_copied_into_and_out_of_the_store() -> None:
    store = InMemoryStore()
    sizes = [1, 2]
    store.insert(Item(id=1, sizes=sizes))
    sizes.append(3)
    with InMemoryUnitOfWork(store) as unit:
        item = unit.repository(Item).get_one(1)
        assert item.sizes == [1, 2]
        item.sizes.append(4)
        unit.rollback()

    assert store.all(Item)[0].sizes == [1, 2]


def test_relationships_are_not_followed_but_foreign_keys_are_stored() -> None:
    store = InMemoryStore()
    with InMemoryUnitOfWork(store) as unit:
        unit.repository(Item).add_all([Item(id=1), Item(id=2, parent_id=1)])
        unit.commit()

    assert [item.parent_id for item in store.all(Item)] == [None, 1]


# -- concurrent units -------------------------------------------------------------------------------


def test_a_key_committed_by_another_unit_meanwhile_fails_the_commit(store: InMemoryStore) -> None:
    with InMemoryUnitOfWork(store) as first, InMemoryUnitOfWork(store) as second:
        first.repository(Account).add(Account(id=3, owner="cat"))
        assert first.repository(Account).count() == 3
        second.repository(Account).add(Account(id=3, owner="cid"))
        second.commit()
        with pytest.raises(uow.DuplicateKeyError, match="another unit"):
            first.commit()

    assert [(a.id, a.owner) for a in store.all(Account)] == [(1, "ann"), (2, "ben"), (3, "cid")]


def test_an_update_of_a_row_another_unit_deleted_meanwhile_fails_the_commit(store: InMemoryStore) -> None:
    with InMemoryUnitOfWork(store) as first, InMemoryUnitOfWork(store) as second:
        first.repository(Account).get_one(1).balance = 99
        second.repository(Account).remove(second.repository(Account).get_one(1))
        second.commit()
        with pytest.raises(StaleDataError, match="another unit deleted it"):
            first.commit()

    assert [a.id for a in store.all(Account)] == [2]


def test_changes_to_different_fields_of_one_row_by_two_units_both_land(store: InMemoryStore) -> None:
    with InMemoryUnitOfWork(store) as first, InMemoryUnitOfWork(store) as second:
        first.repository(Account).get_one(1).balance = 99
        second.repository(Account).get_one(1).owner = "anne"
        second.commit()
        first.commit()

    first = store.all(Account)[0]
    assert (first.owner, first.balance) == ("anne", 99)


# -- repositories -----------------------------------------------------------------------------------


def test_a_repository_class_that_overrides_a_repository_method_is_refused_saying_why() -> None:
    class CountingUsers(uow.Repository[User]):
        def add(self, obj: User) -> User:
            return super().add(obj)

    with InMemoryUnitOfWork() as unit, pytest.raises(uow.InvalidArgumentError, match=r"overrides add\(\)"):
        unit.repository(CountingUsers)


def test_an_in_memory_repository_subclass_is_used_as_it_is() -> None:
    class Users(InMemoryRepository[User]):
        def add(self, obj: User) -> User:
            obj.name = (obj.name or "").title()
            return super().add(obj)

    with InMemoryUnitOfWork() as unit:
        users = unit.repository(Users)
        assert type(users) is Users
        users.add(User(id="1", name="ann"))
        assert users.get_one("1").name == "Ann"
        unit.rollback()


def test_the_fake_has_no_session_and_says_what_to_do_instead() -> None:
    with InMemoryUnitOfWork() as unit:
        with pytest.raises(AttributeError, match="uow_session_factory"):
            _ = unit.session
        with pytest.raises(AttributeError, match="has no session"):
            _ = unit.repository(User).session
