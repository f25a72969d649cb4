"""The contract of the repositories' statement-level methods, on the in-memory unit and every backend.

Upserts, get-or-create, bulk updates and deletes, counted and keyset pages, row locks, loader
options and optimistic locking: each specification runs on every world (``memory``, SQLite,
PostgreSQL and MariaDB, sync and async). Concurrency is specified in ``tests/test_repository_races.py``.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.orm import selectinload

import uow
from tests.models import Account, Counter, Tag, User
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


MEMORY = pytest.mark.parametrize("world", ["memory-sync", "memory-async"], indirect=True)
"""For refusals made before any SQL is built: they are the same on every backend."""


def ids(found: list[Account]) -> list[int]:
    return [account.id for account in found]


def backend_kind(world: World) -> str:
    return "sqlite" if world.backend is None else world.backend.kind


def execute(world: World, unit: Any, statement: Any) -> Any:
    """Run a statement through the unit's own session, as application code may."""
    result = unit.real.session.execute(statement)
    if not inspect.isawaitable(result):
        return result
    runner = getattr(world, "runner", None) or world.flavour.runner  # type: ignore[union-attr]
    return runner.run(result)


# -- upsert ---------------------------------------------------------------------------------------


def test_upsert_inserts_a_new_row_and_returns_it_as_stored(world: World) -> None:
    with world.unit() as unit:
        stored = unit.repository(Account).upsert({"id": 1, "owner": "ann"})
        assert (stored.id, stored.owner, stored.balance) == (1, "ann", 0)
        unit.commit()

    assert world.accounts() == [(1, "ann", 0)]


def test_upsert_updates_the_row_with_the_same_key_and_keeps_fields_not_given(accounts: World) -> None:
    with accounts.unit() as unit:
        stored = unit.repository(Account).upsert({"id": 1, "owner": "anne"})
        assert (stored.owner, stored.balance) == ("anne", 30)
        unit.commit()

    assert accounts.accounts()[0] == (1, "anne", 30)


def test_upsert_refreshes_the_object_the_session_holds_for_that_row(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        loaded = repository.get_one(2)
        stored = repository.upsert({"id": 2, "owner": "bob", "balance": 99})
        assert stored is loaded
        assert (loaded.owner, loaded.balance) == ("bob", 99)
        unit.commit()


def test_upsert_takes_a_new_object_and_writes_the_fields_it_set(accounts: World) -> None:
    with accounts.unit() as unit:
        stored = unit.repository(Account).upsert(Account(id=3, owner="cathy"))
        assert (stored.id, stored.owner, stored.balance, stored.email) == (3, "cathy", 20, "cat@example.org")
        unit.commit()

    assert accounts.accounts()[2] == (3, "cathy", 20)


def test_upsert_many_writes_every_row_and_returns_them_in_the_order_given(accounts: World) -> None:
    rows = [{"id": 7, "owner": "gus"}, {"id": 2, "owner": "bo"}, {"id": 6, "owner": "fay"}]
    with accounts.unit() as unit:
        stored = unit.repository(Account).upsert_many(rows)
        assert [(a.id, a.owner) for a in stored] == [(7, "gus"), (2, "bo"), (6, "fay")]
        unit.commit()

    assert [(i, o) for i, o, _ in accounts.accounts()] == [
        (1, "ann"), (2, "bo"), (3, "cat"), (4, "dan"), (5, "eve"), (6, "fay"), (7, "gus"),
    ]  # fmt: skip


def test_upsert_on_a_unique_field_updates_the_row_that_has_it(accounts: World) -> None:
    with accounts.unit() as unit:
        stored = unit.repository(Account).upsert(
            {"id": 99, "owner": "eva", "email": "eve@example.org"}, on="email", update=["owner"]
        )
        assert (stored.id, stored.owner) == (5, "eva")
        unit.commit()

    assert accounts.accounts()[4] == (5, "eva", 50)


def test_upsert_with_update_changes_only_the_fields_named(accounts: World) -> None:
    with accounts.unit() as unit:
        stored = unit.repository(Account).upsert({"id": 1, "owner": "x", "balance": 1}, update=("balance",))
        assert (stored.owner, stored.balance) == ("ann", 1)
        unit.commit()


def test_upsert_with_an_update_mapping_sets_values_and_expressions_on_the_stored_row(accounts: World) -> None:
    with accounts.unit() as unit:
        rows = [{"id": 1, "owner": "x", "balance": 0}, {"id": 9, "owner": "ivy", "balance": 3}]
        stored = unit.repository(Account).upsert_many(
            rows, update={"balance": Account.balance + 5, "email": None}
        )
        assert [(a.id, a.owner, a.balance, a.email) for a in stored] == [
            (1, "ann", 35, None),
            (9, "ivy", 3, None),
        ]
        unit.commit()


def test_upsert_of_only_the_key_returns_the_existing_row_unchanged(accounts: World) -> None:
    with accounts.unit() as unit:
        stored = unit.repository(Account).upsert_many([{"id": 4, "owner": "dan"}], update=())
        assert [(a.id, a.owner, a.balance) for a in stored] == [(4, "dan", 10)]
        unit.rollback()


def test_upsert_increments_the_version_of_an_updated_row(world: World) -> None:
    world.insert(Counter(id=1, value=5))
    with world.unit() as unit:
        counters = unit.repository(Counter)
        created, updated = counters.upsert_many([{"id": 2, "value": 1}, {"id": 1, "value": 6}])
        assert (created.version, updated.version, updated.value) == (1, 2, 6)
        unit.commit()


def test_upsert_is_rolled_back_and_counts_as_uncommitted_work(accounts: World) -> None:
    with pytest.warns(uow.UncommittedWorkWarning, match="flushed"), accounts.unit() as unit:
        unit.repository(Account).upsert({"id": 1, "owner": "zed"})

    assert accounts.accounts()[0] == (1, "ann", 30)


def test_an_upsert_colliding_on_another_unique_key_raises_duplicate_key_except_on_mariadb(
    accounts: World,
) -> None:
    row = {"id": 8, "owner": "x", "email": "ann@example.org"}
    with accounts.unit() as unit:
        if backend_kind(accounts) == "mariadb":  # ON DUPLICATE KEY UPDATE takes any unique key
            assert unit.repository(Account).upsert(row).id == 1
        else:
            with pytest.raises(uow.DuplicateKeyError):
                unit.repository(Account).upsert(row)
        unit.rollback()


@MEMORY
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda r: r.upsert({"id": 1, "owner": "x"}, on="owner"), uow.InvalidArgumentError, "unique"),
        (lambda r: r.upsert({"id": 1, "owner": "x"}, on="nope"), uow.InvalidFieldError, "nope"),
        (lambda r: r.upsert({"id": 1, "nope": "x"}), uow.InvalidFieldError, "nope"),
        (lambda r: r.upsert({"owner": "x"}), uow.InvalidArgumentError, "no value for 'id'"),
        (lambda r: r.upsert({"id": None, "owner": "x"}), uow.InvalidArgumentError, "NULL"),
        (
            lambda r: r.upsert_many([{"id": 1, "owner": "x"}, {"id": 1, "owner": "y"}]),
            uow.InvalidArgumentError,
            "rows 1 and 2",
        ),
        (
            lambda r: r.upsert_many([{"id": 1, "owner": "x"}, {"id": 2}]),
            uow.InvalidArgumentError,
            "same fields",
        ),
        (lambda r: r.upsert("id=1"), uow.InvalidArgumentError, "mappings"),
        (lambda r: r.upsert({"id": 1, "owner": "x"}, update=["email"]), uow.InvalidArgumentError, "lack"),
    ],
    ids=[
        "not-unique",
        "unknown-key",
        "unknown-field",
        "missing-key",
        "null-key",
        "twice",
        "fields",
        "str",
        "upd",
    ],
)
def test_an_upsert_that_cannot_be_one_statement_is_refused_before_any_sql(
    accounts: World, call: Any, error: type[Exception], match: str
) -> None:
    with accounts.unit() as unit:
        with pytest.raises(error, match=match):
            call(unit.repository(Account))
        unit.commit()

    assert [row[1] for row in accounts.accounts()] == ["ann", "ben", "cat", "dan", "eve"]


@MEMORY
def test_upsert_of_a_loaded_object_is_refused(accounts: World) -> None:
    with accounts.unit() as unit, pytest.raises(uow.InvalidArgumentError, match="already in a session"):
        repository = unit.repository(Account)
        repository.upsert(repository.get_one(1))


def test_upsert_many_of_nothing_returns_an_empty_list(world: World) -> None:
    with world.unit() as unit:
        assert unit.repository(Account).upsert_many([]) == []


# -- get or create --------------------------------------------------------------------------------


def test_get_or_create_creates_the_row_from_keys_and_defaults(world: World) -> None:
    with world.unit() as unit:
        account, created = unit.repository(Account).get_or_create(
            id=1, defaults={"owner": "ann", "balance": 5}
        )
        assert created
        assert (account.id, account.owner, account.balance) == (1, "ann", 5)
        unit.commit()

    assert world.accounts() == [(1, "ann", 5)]


def test_get_or_create_returns_the_existing_row_without_changing_it(accounts: World) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with accounts.unit() as unit:
            account, created = unit.repository(Account).get_or_create(
                email="cat@example.org", defaults={"id": 9, "owner": "other"}
            )
            assert not created
            assert (account.id, account.owner) == (3, "cat")

    assert len(accounts.accounts()) == 5


def test_get_or_create_gives_new_rows_their_first_version(world: World) -> None:
    with world.unit() as unit:
        counter, created = unit.repository(Counter).get_or_create(id=1)
        assert created
        assert counter.version == 1
        unit.commit()


@MEMORY
def test_get_or_create_with_keys_that_are_not_unique_is_refused(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        with pytest.raises(uow.InvalidArgumentError, match="unique"):
            repository.get_or_create(owner="ann")
        with pytest.raises(uow.InvalidArgumentError, match="None"):
            repository.get_or_create(email=None)
        with pytest.raises(uow.InvalidArgumentError, match="both a key and a default"):
            repository.get_or_create(id=1, defaults={"id": 2})
        with pytest.raises(uow.InvalidFieldError, match="nope"):
            repository.get_or_create(id=1, defaults={"nope": 2})


# -- bulk update and delete -----------------------------------------------------------------------


def test_update_where_changes_the_matching_rows_and_counts_them(accounts: World) -> None:
    with accounts.unit() as unit:
        changed = unit.repository(Account).update_where(
            {"balance": Account.balance + 5}, Account.balance < 25
        )
        assert changed == 3
        unit.commit()

    assert [balance for _, _, balance in accounts.accounts()] == [30, 15, 25, 15, 50]


def test_update_where_keeps_the_loaded_objects_in_step(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        ben = repository.get_one(2)
        ann = repository.get_one(1)
        assert repository.update_where({"owner": "x"}, balance=10) == 2
        assert (ben.owner, ann.owner) == ("x", "ann")
        unit.commit()


def test_update_where_increments_the_version_column(world: World) -> None:
    world.insert(Counter(id=1, value=1), Counter(id=2, value=2))
    with world.unit() as unit:
        counters = unit.repository(Counter)
        assert counters.update_where({"value": 0}, sqlalchemy.true()) == 2
        assert [c.version for c in counters.list(order_by="id")] == [2, 2]
        unit.commit()


def test_delete_where_deletes_the_matching_rows_and_the_loaded_objects_go(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        dan = repository.get_one(4)
        assert repository.delete_where(balance=10) == 2
        assert repository.get(4) is None
        assert dan not in unit.real.session
        assert repository.count() == 3
        unit.commit()

    assert [i for i, _, _ in accounts.accounts()] == [1, 3, 5]


def test_a_bulk_statement_that_matches_nothing_returns_zero_and_is_no_work(accounts: World) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with accounts.unit() as unit:
            assert unit.repository(Account).update_where({"balance": 0}, owner="nobody") == 0
            assert unit.repository(Account).delete_where(owner="nobody") == 0


def test_bulk_statements_count_as_uncommitted_work_and_roll_back(accounts: World) -> None:
    with pytest.warns(uow.UncommittedWorkWarning, match="flushed"), accounts.unit() as unit:
        unit.repository(Account).delete_where(sqlalchemy.true())

    assert len(accounts.accounts()) == 5


@MEMORY
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda r: r.update_where({"balance": 0}), uow.InvalidArgumentError, "at least one filter"),
        (lambda r: r.delete_where(), uow.InvalidArgumentError, "at least one filter"),
        (lambda r: r.update_where({}, id=1), uow.InvalidArgumentError, "non-empty"),
        (lambda r: r.update_where({"id": 9}, id=1), uow.InvalidArgumentError, "primary-key"),
        (lambda r: r.update_where({"nope": 9}, id=1), uow.InvalidFieldError, "nope"),
        (lambda r: r.delete_where(nope=1), uow.InvalidFieldError, "nope"),
        (lambda r: r.delete_where("id = 1"), uow.InvalidArgumentError, "raw SQL"),
    ],
    ids=["update-all", "delete-all", "empty", "key", "unknown-value", "unknown-filter", "raw"],
)
def test_a_bulk_statement_without_a_safe_meaning_is_refused(
    accounts: World, call: Any, error: type[Exception], match: str
) -> None:
    with accounts.unit() as unit:
        with pytest.raises(error, match=match):
            call(unit.repository(Account))
        unit.commit()

    assert len(accounts.accounts()) == 5


def test_a_read_only_unit_refuses_bulk_statements(accounts: World) -> None:
    with accounts.unit(read_only=True) as unit, pytest.raises(uow.StateError, match="read-only"):
        unit.repository(Account).delete_where(id=1)


# -- one or none, and a page with its total -------------------------------------------------------


def test_get_one_or_none_returns_the_match_none_or_raises_for_several(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        found = repository.get_one_or_none(owner="cat")
        assert found is not None
        assert found.id == 3
        assert repository.get_one_or_none(owner="nobody") is None
        with pytest.raises(uow.MultipleResultsError, match=r"balance=\?"):
            repository.get_one_or_none(balance=10)


PAGES_AND_TOTALS: list[tuple[dict[str, Any], tuple[list[int], int]]] = [
    ({"order_by": "id", "limit": 2}, ([1, 2], 5)),
    ({"order_by": "id", "limit": 2, "offset": 4}, ([5], 5)),
    ({"order_by": "id", "limit": 2, "offset": 9}, ([], 5)),
    ({"order_by": "id", "limit": 0}, ([], 5)),
    ({"order_by": "id", "offset": 3}, ([4, 5], 5)),
    ({"order_by": "id", "offset": 7}, ([], 5)),
    ({"order_by": "-id"}, ([5, 4, 3, 2, 1], 5)),
    ({"order_by": "id", "limit": 1, "balance": 10}, ([2], 2)),
    ({"order_by": "id", "limit": 3, "owner": "nobody"}, ([], 0)),
]


def test_list_and_count_returns_the_page_and_the_total_of_the_matches(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        for arguments, expected in PAGES_AND_TOTALS:
            found, total = repository.list_and_count(**arguments)
            assert (ids(found), total) == expected, arguments


def test_list_and_count_counts_objects_not_joined_rows(accounts: World) -> None:
    accounts.insert(*(Tag(id=n, account_id=1, label=f"t{n}") for n in range(1, 4)))
    with accounts.unit() as unit:
        found, total = unit.repository(Account).list_and_count(
            order_by="id", limit=2, options=(sqlalchemy.orm.joinedload(Account.tags),)
        )
        assert (ids(found), total) == ([1, 2], 5)
        assert sorted(tag.label for tag in found[0].tags) == ["t1", "t2", "t3"]


# -- keyset pages ---------------------------------------------------------------------------------


def walk(repository: Any, order_by: Any, limit: int) -> list[list[int]]:
    """Every page from the first to the last, following `next`."""
    pages = []
    page = repository.page(order_by=order_by, limit=limit)
    pages.append(ids(page.items))
    while page.next is not None:
        page = repository.page(order_by=order_by, limit=limit, after=page.next)
        pages.append(ids(page.items))
    return pages


KEYSET_ORDERS: list[tuple[Any, list[list[int]]]] = [
    ("id", [[1, 2], [3, 4], [5]]),
    ("-id", [[5, 4], [3, 2], [1]]),
    (["balance", "id"], [[2, 4], [3, 1], [5]]),
    (["-balance", "id"], [[5, 1], [3, 2], [4]]),
    ("balance", [[2, 4], [3, 1], [5]]),
    (Account.owner.desc(), [[5, 4], [3, 2], [1]]),
    ([Account.balance.desc(), Account.id.desc()], [[5, 1], [3, 4], [2]]),
]


def test_keyset_pages_cover_every_row_once_in_order(accounts: World) -> None:
    with accounts.unit() as unit:
        for order_by, expected in KEYSET_ORDERS:
            assert walk(unit.repository(Account), order_by, 2) == expected, order_by


def page_by_page(world: World, offset_paging: bool, between_pages: Any) -> list[int]:
    """Read every page of ids 10, 20, ..., 120 by 3, each in a unit of its own (as requests would), while
    another transaction writes between the pages."""
    seen: list[int] = []
    cursor: str | None = None
    for number in range(12):
        with world.unit() as unit:
            repository = unit.repository(Account)
            if offset_paging:
                found = repository.list(order_by="id", limit=3, offset=3 * number)
            else:
                page = repository.page(order_by="id", limit=3, after=cursor)
                found, cursor = page.items, page.next
        seen.extend(ids(found))
        if not found or (not offset_paging and cursor is None):
            return seen
        between_pages(number)
    raise AssertionError("paging did not end")


ORIGINALS = [10 * n for n in range(1, 13)]


def fresh_originals(world: World) -> None:
    with world.unit() as unit:
        unit.repository(Account).delete_where(sqlalchemy.true())
        unit.commit()
    world.insert(*(Account(id=i, owner=f"o{i}") for i in ORIGINALS))


def test_offset_pages_repeat_rows_when_rows_are_inserted_before_them_but_keyset_pages_do_not(
    world: World,
) -> None:
    def insert_a_first_row(number: int) -> None:
        world.insert(Account(id=number + 1, owner="new"))

    fresh_originals(world)
    by_offset = page_by_page(world, True, insert_a_first_row)
    assert len(by_offset) > len(set(by_offset)), "offset paging repeated the rows that inserts pushed back"

    fresh_originals(world)
    assert page_by_page(world, False, insert_a_first_row) == ORIGINALS


def test_offset_pages_skip_rows_when_rows_before_them_are_deleted_but_keyset_pages_do_not(
    world: World,
) -> None:
    deleted: list[int] = []

    def delete_a_row_already_read(number: int) -> None:
        with world.unit() as other:
            other.repository(Account).delete_where(id=ORIGINALS[number])
            other.commit()
        deleted.append(ORIGINALS[number])

    fresh_originals(world)
    by_offset = page_by_page(world, True, delete_a_row_already_read)
    never_deleted_nor_seen = [i for i in ORIGINALS if i not in by_offset and i not in deleted]
    assert never_deleted_nor_seen, "offset paging skipped rows that were there all along"

    fresh_originals(world)
    assert page_by_page(world, False, delete_a_row_already_read) == ORIGINALS


def test_the_previous_cursor_walks_back_to_the_first_page(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        first = repository.page(order_by="-balance", limit=2)
        assert first.previous is None
        second = repository.page(order_by="-balance", limit=2, after=first.next)
        third = repository.page(order_by="-balance", limit=2, after=second.next)
        assert (ids(third.items), third.next) == ([4], None)
        back = repository.page(order_by="-balance", limit=2, before=third.previous)
        assert ids(back.items) == ids(second.items)
        start = repository.page(order_by="-balance", limit=2, before=back.previous)
        assert ids(start.items) == ids(first.items)
        assert start.previous is None
        assert ids(repository.page(order_by="-balance", limit=2, after=start.next).items) == ids(second.items)


def test_a_page_past_the_end_leads_back_to_the_last_row(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        assert repository.page(order_by="id", limit=5).next is None
        after_four = repository.page(order_by="id", limit=4).next
        assert ids(repository.page(order_by="id", limit=2, after=after_four).items) == [5]
        repository.delete_where(id=5)
        empty = repository.page(order_by="id", limit=2, after=after_four)
        assert (empty.items, empty.next) == ([], None)
        assert ids(repository.page(order_by="id", limit=2, before=empty.previous).items) == [3, 4]
        unit.rollback()


def test_a_page_takes_filters_and_loader_options(accounts: World) -> None:
    accounts.insert(Tag(id=1, account_id=3, label="x"))
    with accounts.unit() as unit:
        page = unit.repository(Account).page(
            Account.balance > 10, order_by="id", limit=2, options=(selectinload(Account.tags),)
        )
        assert ids(page.items) == [1, 3]
        assert [tag.label for tag in page.items[1].tags] == ["x"]


def tampered(cursor: str) -> list[str]:
    payload, _, signature = cursor.partition(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    return [
        flipped + "." + signature,
        payload + "." + signature[::-1],
        payload,
        cursor + "x",
        cursor + "=",
        payload[:3] + "!" + payload[3:] + "." + signature,
        payload + ".\u00e9" + signature,
        "",
        "." * 3,
    ]


@MEMORY
def test_a_tampered_cursor_is_refused_without_repeating_it(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        cursor = repository.page(order_by="id", limit=2).next
        assert cursor is not None
        for bad in [*tampered(cursor), "x" * 10_000, 42]:
            with pytest.raises(uow.InvalidArgumentError, match="not a valid page cursor") as caught:
                repository.page(order_by="id", limit=2, after=bad)
            assert cursor not in str(caught.value)


@MEMORY
def test_a_cursor_made_for_another_order_or_model_is_refused(accounts: World) -> None:
    accounts.insert(User(id="1", name="ann"), User(id="2", name="ben"), User(id="3", name="cat"))
    with accounts.unit() as unit:
        by_id = unit.repository(Account).page(order_by="id", limit=1).next
        users = unit.repository(User).page(order_by="id", limit=1).next
        for order_by, cursor in (("-id", by_id), ("owner", by_id), ("id", users)):
            with pytest.raises(uow.InvalidArgumentError, match="not a valid page cursor"):
                unit.repository(Account).page(order_by=order_by, limit=1, after=cursor)


@MEMORY
def test_a_cursor_signed_with_another_key_is_refused(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        cursor = repository.page(order_by="id", limit=2).next
        try:
            uow.set_cursor_key("k" * 32)
            with pytest.raises(uow.InvalidArgumentError, match="another key"):
                repository.page(order_by="id", limit=2, after=cursor)
            fresh = repository.page(order_by="id", limit=2).next
            assert ids(repository.page(order_by="id", limit=2, after=fresh).items) == [3, 4]
        finally:
            uow.set_cursor_key(None)


@MEMORY
@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"order_by": "email"}, uow.InvalidArgumentError, "may hold NULL"),
        ({"order_by": "nope"}, uow.InvalidFieldError, "nope"),
        ({"order_by": Account.balance + 1}, uow.InvalidArgumentError, "fields of the model only"),
        ({"order_by": ["id", "-id"]}, uow.InvalidArgumentError, "more than once"),
        ({"limit": 0}, uow.InvalidArgumentError, "limit"),
        ({"limit": True}, uow.InvalidArgumentError, "limit"),
        ({"after": "a", "before": "b"}, uow.InvalidArgumentError, "not both"),
    ],
    ids=str,
)
def test_a_page_that_cannot_be_a_keyset_page_is_refused(
    accounts: World, arguments: dict[str, Any], error: type[Exception], match: str
) -> None:
    with accounts.unit() as unit, pytest.raises(error, match=match):
        unit.repository(Account).page(**arguments)


# -- row locks and loader options -----------------------------------------------------------------


LOCKING_READS = {
    "get": lambda r, lock: [r.get(1, for_update=lock)],
    "get_one": lambda r, lock: [r.get_one(1, for_update=lock)],
    "list": lambda r, lock: r.list(Account.id <= 2, order_by="id", for_update=lock),
    "first": lambda r, lock: [r.first(order_by="id", for_update=lock)],
    "one": lambda r, lock: [r.one(id=1, for_update=lock)],
    "get_one_or_none": lambda r, lock: [r.get_one_or_none(id=1, for_update=lock)],
    "stream": lambda r, lock: list(r.stream(Account.id <= 2, order_by="id", for_update=lock)),
}


def test_every_read_takes_a_row_lock_and_returns_the_same_rows(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        for read, call in LOCKING_READS.items():
            for lock in (True, uow.Lock(), uow.Lock(read=True)):
                assert ids(call(repository, lock))[0] == 1, (read, lock)


def test_a_locking_read_refreshes_an_object_the_session_held(accounts: World) -> None:
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        ann = repository.get_one(1)
        behind_its_back = sqlalchemy.update(Account).where(Account.id == 1).values(balance=77)
        execute(accounts, unit, behind_its_back.execution_options(synchronize_session=False))
        assert repository.get_one(1).balance == 30  # the identity map's copy
        assert repository.get_one(1, for_update=True) is ann
        assert ann.balance == 77
        unit.rollback()


SUPPORTED = {
    "sqlite": {"plain", "read"},
    "postgresql": {"plain", "read", "nowait", "skip_locked", "of", "key_share", "read_key_share"},
    "mariadb": {"plain", "read", "nowait", "skip_locked"},
}
LOCKS = {
    "plain": uow.Lock(),
    "read": uow.Lock(read=True),
    "nowait": uow.Lock(nowait=True),
    "skip_locked": uow.Lock(skip_locked=True),
    "of": uow.Lock(of=Account),
    "key_share": uow.Lock(key_share=True),
    "read_key_share": uow.Lock(read=True, key_share=True),
}
BACKEND_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}


def test_a_lock_option_the_backend_lacks_is_refused_naming_the_backend_and_the_option(
    accounts: World,
) -> None:
    kind = backend_kind(accounts)
    with accounts.unit() as unit:
        repository = unit.repository(Account)
        for name, lock in LOCKS.items():
            if name in SUPPORTED[kind]:
                assert ids(repository.list(order_by="id", for_update=lock)) == [1, 2, 3, 4, 5]
                continue
            option = name.removeprefix("read_")
            with pytest.raises(uow.InvalidArgumentError, match=rf"^{BACKEND_NAMES[kind]} .*Lock\({option}="):
                repository.list(for_update=lock)


@MEMORY
@pytest.mark.parametrize("bad", [1, "yes", None, {"nowait": True}], ids=["int", "str", "none", "dict"])
def test_for_update_takes_only_booleans_and_locks(accounts: World, bad: Any) -> None:
    with accounts.unit() as unit, pytest.raises(uow.InvalidArgumentError, match="for_update"):
        unit.repository(Account).list(for_update=bad)


def test_a_lock_asking_for_nowait_and_skip_locked_at_once_is_refused() -> None:
    with pytest.raises(uow.InvalidArgumentError, match="choose one"):
        uow.Lock(nowait=True, skip_locked=True)


def the_only(found: Any) -> Any:
    [only] = found  # reads a stream to its end
    return only


LOADING_READS = {
    "get": lambda r, o: r.get(1, options=o),
    "get_one": lambda r, o: r.get_one(1, options=o),
    "list": lambda r, o: r.list(id=1, options=o)[0],
    "first": lambda r, o: r.first(order_by="id", options=o),
    "one": lambda r, o: r.one(id=1, options=o),
    "get_one_or_none": lambda r, o: r.get_one_or_none(id=1, options=o),
    "stream": lambda r, o: the_only(r.stream(id=1, options=o)),
    "list_and_count": lambda r, o: r.list_and_count(id=1, options=o)[0][0],
    "page": lambda r, o: r.page(id=1, options=o).items[0],
}


def loaded(account: Any) -> list[str]:
    assert "tags" in sqlalchemy.inspect(account).dict, "the relationship was not loaded"
    return sorted(tag.label for tag in account.tags)


def test_every_read_applies_loader_options_so_no_lazy_load_is_needed(accounts: World) -> None:
    accounts.insert(Tag(id=1, account_id=1, label="a"), Tag(id=2, account_id=1, label="b"))
    for read, call in LOADING_READS.items():
        with accounts.unit() as unit:
            repository = unit.repository(Account)
            if read in {"get", "get_one"}:
                repository.get_one(1)  # in the identity map already: the options must still load
            assert loaded(call(repository, (selectinload(Account.tags),))) == ["a", "b"], read


def test_joined_and_subquery_loads_apply_to_reads_that_return_whole_results(accounts: World) -> None:
    accounts.insert(Tag(id=1, account_id=1, label="a"), Tag(id=2, account_id=1, label="b"))
    for loader in (sqlalchemy.orm.joinedload, sqlalchemy.orm.subqueryload):
        with accounts.unit() as unit:
            repository = unit.repository(Account)
            for read, call in LOADING_READS.items():
                if read != "stream":  # SQLAlchemy streams in batches with selectinload only
                    assert loaded(call(repository, (loader(Account.tags),))) == ["a", "b"], (loader, read)
                    unit.real.session.expunge_all()


@MEMORY
@pytest.mark.parametrize("bad", [selectinload(Account.tags), "tags", [object()]], ids=["bare", "str", "obj"])
def test_options_must_be_a_sequence_of_loader_options(accounts: World, bad: Any) -> None:
    with accounts.unit() as unit, pytest.raises(uow.InvalidArgumentError, match="loader options"):
        unit.repository(Account).list(options=bad)


# -- optimistic locking ---------------------------------------------------------------------------


def test_a_write_of_a_stale_version_raises_conflict_and_commits_nothing(world: World) -> None:
    world.insert(Counter(id=1, value=0))
    with world.unit() as unit:
        stale = unit.repository(Counter).get_one(1)
    with world.unit() as unit:
        unit.repository(Counter).get_one(1).value = 10
        unit.commit()
    with world.unit() as unit:
        unit.repository(Counter).add(stale)
        stale.value = 1
        with pytest.raises(uow.ConflictError, match="uow_counter") as caught:
            unit.commit()
        assert isinstance(caught.value, sqlalchemy.orm.exc.StaleDataError)
        assert isinstance(caught.value.__cause__, sqlalchemy.orm.exc.StaleDataError)
        assert uow.is_transient(caught.value)

    with world.unit() as unit:
        assert unit.repository(Counter).get_one(1).value == 10


def test_a_stale_version_flushed_by_a_read_raises_conflict(world: World) -> None:
    world.insert(Counter(id=1, value=0))
    with world.unit() as unit:
        stale = unit.repository(Counter).get_one(1)
    with world.unit() as unit:
        unit.repository(Counter).update_where({"value": 5}, id=1)
        unit.commit()
    with world.unit() as unit:
        counters = unit.repository(Counter)
        counters.add(stale)
        stale.value = 1
        with pytest.raises(uow.ConflictError):
            counters.list()
        unit.rollback()


def test_a_stale_version_released_with_a_savepoint_raises_conflict_and_keeps_the_work_before(
    world: World,
) -> None:
    world.insert(Counter(id=1, value=0))
    with world.unit() as unit:
        stale = unit.repository(Counter).get_one(1)
    with world.unit() as unit:
        unit.repository(Counter).update_where({"value": 5}, id=1)
        unit.commit()
    with world.unit() as unit:
        counters = unit.repository(Counter)
        counters.add(Counter(id=2, value=2))
        with pytest.raises(uow.ConflictError), unit.savepoint():
            counters.add(stale)
            stale.value = 1
        unit.commit()

    with world.unit() as unit:
        assert [(c.id, c.value) for c in unit.repository(Counter).list(order_by="id")] == [(1, 5), (2, 2)]
