"""What a repository reads and writes, and what it refuses to turn into SQL."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, event, func, literal, select
from sqlalchemy.orm import Session, registry

import uow
from tests.conftest import Backend
from tests.drivers import Flavour, UnitDriver
from tests.models import Account, AsyncUserRepository, User, UserRepository


@contextmanager
def recorded_statements(flavour: Flavour) -> Iterator[list[str]]:
    """Every SQL statement the flavour's engine sends while the block runs."""
    engine = getattr(flavour.engine, "sync_engine", flavour.engine)
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def user_repository_class(flavour: Flavour) -> type[Any]:
    return AsyncUserRepository if flavour.is_async else UserRepository


ACCOUNTS = [
    (1, "ann", 30, "ann@example.org"),
    (2, "ben", 10, None),
    (3, "cat", 20, "cat@example.org"),
    (4, "dan", 10, None),
    (5, "eve", 50, "eve@example.org"),
]


@pytest.fixture
def accounts(backend: Backend) -> Backend:
    backend.insert(*(Account(id=i, owner=o, balance=b, email=e) for i, o, b, e in ACCOUNTS))
    return backend


def ids(accounts: list[Account]) -> list[int]:
    return [account.id for account in accounts]


# -- getting a repository -----------------------------------------------------------------------


def test_a_unit_gives_the_same_repository_for_the_same_model_within_a_block(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        first = unit.real.repository(User)
        assert unit.real.repository(User) is first
        assert unit.real.repository(Account) is not first
        assert first.model is User
        assert first.session is unit.session

    with flavour.unit() as unit:
        assert unit.real.repository(User) is not first


def test_a_repository_subclass_is_built_by_the_unit_and_keeps_its_queries(
    flavour: Flavour, backend: Backend
) -> None:
    backend.insert(User(id="1", name="ann"), User(id="2", name="ben"), User(id="3", name="ann"))
    cls = user_repository_class(flavour)
    with flavour.unit() as unit:
        users = unit.repository(cls)
        assert isinstance(users.real, cls)
        assert users.real is unit.real.repository(cls)
        assert users.model is User
        assert [user.id for user in users.named("ann")] == ["1", "3"]


def test_a_repository_of_an_unmapped_class_is_refused(flavour: Flavour, backend: Backend) -> None:
    class NotMapped:
        pass

    with flavour.unit() as unit, pytest.raises(uow.InvalidArgumentError, match="NotMapped"):
        unit.repository(NotMapped)


def test_a_repository_without_a_model_is_refused() -> None:
    with pytest.raises(uow.InvalidArgumentError, match="does not know its model"):
        uow.Repository(Session())


def test_a_repository_can_be_built_on_a_plain_session(backend: Backend) -> None:
    backend.insert(User(id="1", name="ann"))
    with Session(backend.check) as session:
        assert UserRepository(session).get_one("1").name == "ann"
        assert uow.Repository(session, User).count() == 1


class Plain:
    """A domain class that knows nothing of SQLAlchemy, mapped imperatively (ports and adapters)."""

    def __init__(self, id: int, name: str) -> None:
        self.id = id
        self.name = name


@pytest.fixture
def map_plain(backend: Backend) -> Iterator[Any]:
    """Maps `Plain` with `registry.map_imperatively()` on fresh table and registry objects each call.

    The table is created on the backend at the first call and dropped after the test, when every
    mapping made is disposed of.
    """
    registries: list[registry] = []

    def map_it() -> tuple[registry, Table]:
        metadata = MetaData()
        table = Table(
            "uow_plain",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=False),
            Column("name", String(20)),
        )
        mapper_registry = registry(metadata=metadata)
        mapper_registry.map_imperatively(Plain, table)
        if not registries:
            metadata.drop_all(backend.check)
            metadata.create_all(backend.check)
        registries.append(mapper_registry)
        return mapper_registry, table

    yield map_it
    for mapper_registry in registries:
        mapper_registry.dispose()
    if registries:
        registries[-1].metadata.drop_all(backend.check)


def test_a_class_mapped_again_after_its_mappers_were_cleared_works_in_a_repository(
    flavour: Flavour, backend: Backend, map_plain: Any
) -> None:
    first, _ = map_plain()
    with flavour.unit() as unit:
        unit.repository(Plain).insert_many([{"id": 1, "name": "ann"}])
        assert [plain.name for plain in unit.repository(Plain).list()] == ["ann"]
        unit.commit()

    # What clear_mappers() does to every registry; called for all of them it would also unmap the
    # declarative models the other specifications use.
    first.dispose()
    _, table = map_plain()

    with flavour.unit() as unit:
        plains = unit.repository(Plain)
        assert [(plain.id, plain.name) for plain in plains.list(order_by="id")] == [(1, "ann")]
        assert plains.get_one(1).name == "ann"
        assert plains.count(name="ann") == 1
        assert plains.insert_many([{"id": 2, "name": "ben"}]) == 1
        unit.commit()

    with backend.check.connect() as connection:
        assert connection.execute(select(table.c.id, table.c.name).order_by(table.c.id)).all() == [
            (1, "ann"),
            (2, "ben"),
        ]


# -- writes -------------------------------------------------------------------------------------


def test_add_returns_the_object_and_inserts_it_on_commit(flavour: Flavour, backend: Backend) -> None:
    ann = User(id="1", name="ann")
    with flavour.unit() as unit:
        assert unit.repository(User).add(ann) is ann
        unit.commit()

    assert backend.users() == [("1", "ann")]


def test_add_all_returns_a_list_and_inserts_every_object(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        added = unit.repository(User).add_all(User(id=str(i), name=f"u{i}") for i in range(3))
        assert [user.id for user in added] == ["0", "1", "2"]
        unit.commit()

    assert backend.users() == [("0", "u0"), ("1", "u1"), ("2", "u2")]


def test_adding_an_object_of_another_model_is_refused_naming_both(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        with pytest.raises(uow.InvalidArgumentError, match=r"User.*Account"):
            unit.repository(User).add(Account(id=1, owner="ann"))
        assert len(unit.session.new) == 0


def test_add_all_with_one_wrong_object_adds_none(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        with pytest.raises(uow.InvalidArgumentError):
            unit.repository(User).add_all([User(id="1", name="ann"), Account(id=1, owner="x")])
        assert len(unit.session.new) == 0


def test_remove_deletes_a_stored_object_on_commit(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="1", name="ann"), User(id="2", name="ben"))
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.remove(users.get_one("1"))
        unit.commit()

    assert backend.users() == [("2", "ben")]


def test_remove_of_an_object_never_flushed_means_it_is_never_inserted(
    flavour: Flavour, backend: Backend
) -> None:
    with flavour.unit() as unit:
        users = unit.repository(User)
        ann = users.add(User(id="1", name="ann"))
        users.remove(ann)
        unit.commit()

    assert backend.users() == []


def test_remove_of_an_object_never_added_is_refused(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit, pytest.raises(uow.InvalidArgumentError, match="never added"):
        unit.repository(User).remove(User(id="1", name="ann"))


def test_repositories_never_commit(flavour: Flavour, backend: Backend) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", uow.UncommittedWorkWarning)
        with flavour.unit() as unit:
            users = unit.repository(User)
            users.add(User(id="1", name="ann"))
            assert users.count() == 1  # autoflushed, not committed
            assert users.exists(id="1")

    assert backend.users() == []


def test_a_duplicate_flushed_by_a_read_raises_duplicate_key(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="1", name="ann"))
    with flavour.unit() as unit:
        users = unit.repository(User)
        users.add(User(id="1", name="twin"))
        with pytest.raises(uow.DuplicateKeyError):
            users.list()
        unit.rollback()

    assert backend.users() == [("1", "ann")]


def test_insert_many_inserts_rows_without_loading_objects(flavour: Flavour, backend: Backend) -> None:
    rows = [{"id": i, "owner": f"owner{i}", "balance": i * 10} for i in range(1, 251)]
    with flavour.unit() as unit:
        assert unit.repository(Account).insert_many(iter(rows)) == 250
        assert len(unit.session.identity_map) == 0
        assert len(unit.session.new) == 0
        unit.commit()

    assert backend.accounts() == [(i, f"owner{i}", i * 10) for i in range(1, 251)]


def test_insert_many_applies_column_defaults(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        unit.repository(Account).insert_many([{"id": 1, "owner": "ann"}])
        unit.commit()

    assert backend.accounts() == [(1, "ann", 0)]


def test_insert_many_is_rolled_back_like_any_other_write(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        unit.repository(User).insert_many([{"id": "1", "name": "ann"}])
        unit.rollback()

    assert backend.users() == []


def test_insert_many_with_an_unknown_field_sends_nothing(flavour: Flavour, backend: Backend) -> None:
    rows = [{"id": "1", "name": "ann"}, {"id": "2", "name; DROP TABLE user": "x"}]
    with flavour.unit() as unit, recorded_statements(flavour) as sent:
        with pytest.raises(uow.InvalidFieldError, match="User") as caught:
            unit.repository(User).insert_many(rows)
        assert caught.value.field == "name; DROP TABLE user"
        assert sent == []


def test_insert_many_rows_naming_different_fields_are_refused_before_any_sql(
    flavour: Flavour, backend: Backend
) -> None:
    rows = [{"id": 1, "owner": "ann"}, {"id": 2, "owner": "ben", "balance": 5}]
    with flavour.unit() as unit, recorded_statements(flavour) as sent:
        with pytest.raises(uow.InvalidArgumentError, match="same fields: row 2"):
            unit.repository(Account).insert_many(rows)
        assert sent == []


def test_insert_many_of_nothing_sends_nothing(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit, recorded_statements(flavour) as sent:
        assert unit.repository(User).insert_many([]) == 0
        assert sent == []


def test_insert_many_of_an_existing_key_raises_duplicate_key(flavour: Flavour, backend: Backend) -> None:
    backend.insert(User(id="1", name="ann"))
    with flavour.unit() as unit:
        with pytest.raises(uow.DuplicateKeyError):
            unit.repository(User).insert_many([{"id": "2", "name": "ben"}, {"id": "1", "name": "twin"}])
        unit.rollback()

    assert backend.users() == [("1", "ann")]


def test_stream_yields_every_match_in_order_in_batches(flavour: Flavour, backend: Backend) -> None:
    backend.insert(*(Account(id=i, owner=f"o{i}", balance=i % 3) for i in range(1, 101)))
    with flavour.unit() as unit:
        streamed = list(unit.repository(Account).stream(balance=1, order_by="-id", batch_size=7))

    assert [account.id for account in streamed] == [i for i in range(100, 0, -1) if i % 3 == 1]


def test_stream_checks_its_arguments_before_any_sql(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit, recorded_statements(flavour) as sent:
        with pytest.raises(uow.InvalidFieldError):
            unit.repository(Account).stream(nope=1)
        for bad in (0, -1, True, 2.5):
            with pytest.raises(uow.InvalidArgumentError, match="batch_size"):
                unit.repository(Account).stream(batch_size=bad)
        assert sent == []


# -- get ----------------------------------------------------------------------------------------


def test_get_returns_the_object_with_that_primary_key(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit:
        account = unit.repository(Account).get(3)
        assert account is not None
        assert (account.id, account.owner) == (3, "cat")


def test_get_returns_none_when_there_is_no_such_object(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit:
        assert unit.repository(Account).get(99) is None


def test_get_uses_the_identity_map_without_a_query(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit:
        repository = unit.repository(Account)
        first = repository.get(1)
        with recorded_statements(flavour) as sent:
            assert repository.get(1) is first
            assert repository.get_one(1) is first
        assert sent == []


def test_get_one_raises_not_found_naming_the_model_and_its_key_fields(
    flavour: Flavour, accounts: Backend
) -> None:
    with flavour.unit() as unit, pytest.raises(uow.NotFoundError) as caught:
        unit.repository(Account).get_one(99)
    assert str(caught.value) == "no Account found for id=?"
    assert isinstance(caught.value, LookupError)
    assert caught.value.model is Account


# -- list, first, one, count, exists ------------------------------------------------------------


def test_list_without_filters_returns_every_object(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit:
        assert sorted(ids(unit.repository(Account).list())) == [1, 2, 3, 4, 5]


def test_list_filters_by_keyword_equality(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit:
        assert ids(unit.repository(Account).list(balance=10, order_by="id")) == [2, 4]


def test_a_keyword_filter_of_none_matches_null(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit:
        assert ids(unit.repository(Account).list(email=None, order_by="id")) == [2, 4]


def test_list_filters_by_expressions_and_keywords_together(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit:
        found = unit.repository(Account).list(Account.balance >= 20, Account.id < 5, order_by="id")
        assert ids(found) == [1, 3]
        assert ids(unit.repository(Account).list(Account.owner.like("%a%"), balance=10)) == [4]


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        ("owner", [1, 2, 3, 4, 5]),
        ("-owner", [5, 4, 3, 2, 1]),
        (["balance", "-id"], [4, 2, 3, 1, 5]),
        (("-balance", "id"), [5, 1, 3, 2, 4]),
        (Account.owner.desc(), [5, 4, 3, 2, 1]),
        ([Account.balance, Account.id.desc()], [4, 2, 3, 1, 5]),
        (Account.owner, [1, 2, 3, 4, 5]),
    ],
    ids=["name", "-name", "list", "tuple", "expression", "expressions", "attribute"],
)
def test_list_orders_by_names_and_expressions(
    flavour: Flavour, accounts: Backend, order_by: Any, expected: list[int]
) -> None:
    with flavour.unit() as unit:
        assert ids(unit.repository(Account).list(order_by=order_by)) == expected


def test_list_pages_with_limit_and_offset(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit:
        accounts_ = unit.repository(Account)
        assert ids(accounts_.list(order_by="id", limit=2)) == [1, 2]
        assert ids(accounts_.list(order_by="id", limit=2, offset=2)) == [3, 4]
        assert ids(accounts_.list(order_by="id", limit=2, offset=4)) == [5]
        assert ids(accounts_.list(order_by="id", limit=0)) == []
        assert ids(accounts_.list(order_by="id", offset=3)) == [4, 5]


def test_paging_any_ordering_matches_slicing_the_sorted_rows(flavour: Flavour, accounts: Backend) -> None:
    columns = {"id": 0, "owner": 1, "balance": 2}

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        keys=st.lists(st.sampled_from(["id", "-id", "owner", "-owner", "balance", "-balance"]), max_size=2),
        limit=st.none() | st.integers(0, 6),
        offset=st.none() | st.integers(0, 6),
    )
    def check(keys: list[str], limit: int | None, offset: int | None) -> None:
        order = [*keys, "id"]  # a total order, so the expected page is unique
        rows = list(ACCOUNTS)
        for key in reversed(order):
            rows.sort(key=lambda row: row[columns[key.lstrip("-")]], reverse=key.startswith("-"))
        start = offset or 0
        expected = [row[0] for row in rows][start : None if limit is None else start + limit]
        with flavour.unit() as unit:
            found = unit.repository(Account).list(order_by=order, limit=limit, offset=offset)
            assert ids(found) == expected

    check()


def test_first_returns_the_first_match_in_order_or_none(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit:
        accounts_ = unit.repository(Account)
        first = accounts_.first(balance=10, order_by="-id")
        assert first is not None
        assert first.id == 4
        assert accounts_.first(owner="nobody") is None


def test_one_returns_the_only_match(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit:
        assert unit.repository(Account).one(owner="cat").id == 3


def test_one_raises_not_found_when_nothing_matches(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit, pytest.raises(uow.NotFoundError, match=r"^no Account found for owner=\?$"):
        unit.repository(Account).one(owner="nobody")


def test_one_raises_multiple_results_when_several_match(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit, pytest.raises(uow.MultipleResultsError, match=r"Account.*balance=\?"):
        unit.repository(Account).one(balance=10)


SECRET = "secret-token-123"
"""A value searched for: lookup errors must never show it, as it may be personal data or a secret."""


def everything_shown(error: BaseException) -> str:
    """What logs and tracebacks may show of `error`: str, repr and notes of it and of its chain."""
    shown: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        shown += [str(seen), repr(seen), *getattr(seen, "__notes__", [])]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(shown)


@pytest.mark.parametrize(
    ("lookup", "error", "message"),
    [
        pytest.param(
            lambda unit: unit.repository(User).get_one(SECRET),
            uow.NotFoundError,
            "no User found for id=?",
            id="get_one",
        ),
        pytest.param(
            lambda unit: unit.repository(Account).one(email=SECRET),
            uow.NotFoundError,
            "no Account found for email=?",
            id="one-keyword",
        ),
        pytest.param(
            lambda unit: unit.repository(Account).one(Account.email == SECRET, balance=10),
            uow.NotFoundError,
            "no Account found for uow_account.email = ?, balance=?",
            id="one-expression",
        ),
        pytest.param(
            lambda unit: unit.repository(Account).one(Account.email.in_([SECRET, "x"])),
            uow.NotFoundError,
            "no Account found for uow_account.email IN (?)",
            id="one-in",
        ),
        pytest.param(
            lambda unit: unit.repository(Account).one(Account.email.like(f"%{SECRET}%")),
            uow.NotFoundError,
            "no Account found for uow_account.email LIKE ?",
            id="one-like",
        ),
        pytest.param(
            lambda unit: unit.repository(Account).one(Account.email == literal(SECRET, literal_execute=True)),
            uow.NotFoundError,
            "no Account found for uow_account.email = ?",
            id="one-literal-execute",
        ),
        pytest.param(
            lambda unit: unit.repository(Account).one(owner=SECRET),
            uow.MultipleResultsError,
            "more than one Account found for owner=?; expected exactly one",
            id="one-several-keyword",
        ),
        pytest.param(
            lambda unit: unit.repository(Account).one(func.lower(Account.owner) == SECRET),
            uow.MultipleResultsError,
            "more than one Account found for lower(uow_account.owner) = ?; expected exactly one",
            id="one-several-expression",
        ),
    ],
)
def test_lookup_errors_name_the_model_and_fields_but_never_the_values_searched_for(
    flavour: Flavour,
    accounts: Backend,
    lookup: Callable[[UnitDriver], object],
    error: type[uow.UnitOfWorkError],
    message: str,
) -> None:
    accounts.insert(Account(id=10, owner=SECRET), Account(id=11, owner=SECRET))
    with flavour.unit() as unit:
        with pytest.raises(error) as caught:
            lookup(unit)
        assert str(caught.value) == message
        assert SECRET not in everything_shown(caught.value)
        assert SECRET not in caught.value.criteria  # type: ignore[attr-defined]


def test_count_and_exists_take_the_same_filters(flavour: Flavour, accounts: Backend) -> None:
    with flavour.unit() as unit:
        accounts_ = unit.repository(Account)
        assert accounts_.count() == 5
        assert accounts_.count(balance=10) == 2
        assert accounts_.count(Account.balance > 15, email=None) == 0
        assert accounts_.exists()
        assert accounts_.exists(Account.balance > 40)
        assert not accounts_.exists(owner="nobody")


def test_count_and_exists_on_an_empty_table(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        assert unit.repository(Account).count() == 0
        assert unit.repository(Account).exists() is False


# -- refused input ------------------------------------------------------------------------------

BAD_NAMES = [
    "nope",
    "tags",  # a relationship, not a column
    "__class__",
    "__dict__",
    "metadata",
    "registry",
    "_sa_instance_state",
    "__table__",
    "",
    "-",
    "id; DROP TABLE uow_account",
    "id = 1 OR 1=1",
    "owner) OR (1=1",
    "-owner; --",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_keyword_filter_that_is_not_a_mapped_column_is_refused_before_any_sql(
    flavour: Flavour, accounts: Backend, name: str
) -> None:
    with flavour.unit() as unit:
        repository = unit.repository(Account)
        for method in ("list", "first", "one", "count", "exists"):
            with recorded_statements(flavour) as sent, pytest.raises(uow.InvalidFieldError) as caught:
                getattr(repository, method)(**{name: 1})
            assert sent == []
            assert caught.value.model is Account
            assert caught.value.field == name
            assert "Account" in str(caught.value)

    assert len(accounts.accounts()) == 5


@pytest.mark.parametrize("name", [name for name in BAD_NAMES if name.lstrip("-")])
def test_a_sort_key_that_is_not_a_mapped_column_is_refused_before_any_sql(
    flavour: Flavour, accounts: Backend, name: str
) -> None:
    with flavour.unit() as unit:
        repository = unit.repository(Account)
        for order_by in (name, [name], ["id", name]):
            with recorded_statements(flavour) as sent, pytest.raises(uow.InvalidFieldError) as caught:
                repository.list(order_by=order_by)
            assert sent == []
            assert caught.value.field == name
            assert isinstance(caught.value, ValueError)

    assert len(accounts.accounts()) == 5


@pytest.mark.parametrize("bad", ["id = 1", "1=1; DROP TABLE uow_account", 1, None, object()])
def test_a_positional_filter_that_is_not_an_expression_is_refused(
    flavour: Flavour, accounts: Backend, bad: object
) -> None:
    with flavour.unit() as unit, recorded_statements(flavour) as sent:
        with pytest.raises(uow.InvalidArgumentError, match="expressions"):
            unit.repository(Account).list(bad)
        assert sent == []


@pytest.mark.parametrize("bad", [1, 2.5, {"id": 1}, object(), [1]])
def test_an_order_by_that_is_neither_name_nor_expression_is_refused(
    flavour: Flavour, accounts: Backend, bad: object
) -> None:
    with flavour.unit() as unit, pytest.raises(uow.InvalidArgumentError, match="order_by"):
        unit.repository(Account).list(order_by=bad)


@pytest.mark.parametrize(
    ("argument", "value"),
    [("limit", -1), ("offset", -5), ("limit", True), ("offset", "3"), ("limit", 1.5)],
)
def test_a_limit_or_offset_that_is_not_a_non_negative_int_is_refused(
    flavour: Flavour, accounts: Backend, argument: str, value: object
) -> None:
    with flavour.unit() as unit, pytest.raises(uow.InvalidArgumentError, match=argument):
        unit.repository(Account).list(**{argument: value})


@pytest.mark.parametrize(
    ("method", "arguments"),
    [
        ("list", {"limit": 2**63}),
        ("list", {"offset": 2**63}),
        ("list", {"limit": 10**20, "offset": 0}),
        ("stream", {"batch_size": 2**31}),
        ("stream", {"batch_size": 10**20}),
    ],
    ids=str,
)
def test_paging_values_beyond_what_every_backend_takes_are_refused_before_any_sql(
    flavour: Flavour, accounts: Backend, method: str, arguments: dict[str, int]
) -> None:
    with flavour.unit() as unit:
        repository = unit.repository(Account)
        with recorded_statements(flavour) as sent, pytest.raises(uow.InvalidArgumentError) as caught:
            getattr(repository, method)(order_by="id", **arguments)
        assert sent == []
        assert str(caught.value).startswith(f"{next(iter(arguments))} for Account must be")

        assert ids(repository.list(order_by="id")) == [1, 2, 3, 4, 5]
        repository.add(Account(id=6, owner="fay"))
        unit.commit()

    assert len(accounts.accounts()) == 6


def test_the_largest_paging_values_every_backend_takes_are_accepted(
    flavour: Flavour, accounts: Backend
) -> None:
    with flavour.unit() as unit:
        repository = unit.repository(Account)
        assert ids(repository.list(order_by="id", limit=2**63 - 1)) == [1, 2, 3, 4, 5]
        assert repository.list(order_by="id", limit=1, offset=2**63 - 1) == []
        assert ids(repository.stream(order_by="id", batch_size=2**31 - 1)) == [1, 2, 3, 4, 5]


def test_unit_driver_is_the_real_flavour(flavour: Flavour, backend: Backend) -> None:
    with flavour.unit() as unit:
        assert isinstance(unit, UnitDriver)
        expected = uow.AsyncUnitOfWork if flavour.is_async else uow.UnitOfWork
        assert type(unit.real) is expected
        repository = unit.repository(User).real
        assert type(repository) is (uow.AsyncRepository if flavour.is_async else uow.Repository)
