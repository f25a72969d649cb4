"""Query parameters to `list()` arguments: what a client may ask for, and what is refused (a 400)."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from typing import Any

import pytest
from sqlalchemy import JSON, Date, DateTime, Numeric, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import uow
from uow.examples.users import User
from uow.web import InvalidQueryError, ListQuery, parse_list_query


class Base(DeclarativeBase):
    pass


class Size(enum.Enum):
    small = "S"
    large = "L"


class Order(Base):
    """Columns of every type a query string can be read as, and one it cannot."""

    __tablename__ = "web_order"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[uuid.UUID] = mapped_column(Uuid)
    placed: Mapped[datetime.datetime] = mapped_column(DateTime)
    due: Mapped[datetime.date] = mapped_column(Date)
    total: Mapped[decimal.Decimal] = mapped_column(Numeric(10, 2))
    weight: Mapped[float]
    paid: Mapped[bool]
    note: Mapped[str] = mapped_column(String(40))
    size: Mapped[Size]
    extra: Mapped[dict[str, Any]] = mapped_column(JSON)


def parse(
    params: dict[str, str] | list[tuple[str, str]], model: type[Any] = Order, **options: Any
) -> ListQuery:
    items = list(params.items()) if isinstance(params, dict) else params
    return parse_list_query(model, items, **options)


def test_no_parameters_ask_for_the_first_page_in_primary_key_order() -> None:
    assert parse({}) == ListQuery({}, ("id",), 50, None)


def test_the_arguments_are_those_of_list() -> None:
    query = parse({"note": "x", "sort": "-weight", "limit": "5", "offset": "10"})

    assert query.arguments == {"note": "x", "order_by": ["-weight", "id"], "limit": 5, "offset": 10}


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ("id", "42", 42),
        ("code", "12345678-1234-5678-1234-567812345678", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        ("placed", "2024-05-01T10:30:00", datetime.datetime(2024, 5, 1, 10, 30)),
        ("due", "2024-05-01", datetime.date(2024, 5, 1)),
        ("total", "12.50", decimal.Decimal("12.50")),
        ("weight", "0.5", 0.5),
        ("paid", "true", True),
        ("paid", "0", False),
        ("paid", "yes", True),
        ("paid", "Off", False),
        ("note", "gift", "gift"),
        ("size", "large", Size.large),
    ],
)
def test_a_filter_value_is_converted_to_its_column_type(field: str, text: str, value: object) -> None:
    assert parse({field: text}).equals == {field: value}


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("id", "forty-two"),
        ("id", str(2**63)),
        ("code", "not-a-uuid"),
        ("placed", "yesterday"),
        ("due", "2024-13-01"),
        ("total", "NaN"),
        ("weight", "inf"),
        ("paid", "maybe"),
        ("id", str(2**31)),
        ("id", "1_000"),
        ("id", "\u0661\u0662"),
        ("weight", "1e-320"),
        ("total", "1e5"),
        ("total", "123456789"),
        ("placed", "2024-05-01T10:30:00+02:00"),
        ("note", "a\x00b"),
        ("note", "x" * 1001),
        ("size", "L"),
    ],
)
def test_a_value_its_column_cannot_take_is_refused_without_echoing_it(field: str, text: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        parse({field: text})

    assert repr(field) in str(caught.value)
    assert text not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "text", "takes"),
    [
        ("id", str(2**31), "an integer from -2**31 to 2**31 - 1"),
        ("total", "123456789", "a decimal number with at most 8 digits before the point"),
        (
            "placed",
            "2024-05-01T10:30:00Z",
            "an ISO 8601 date and time without a time zone (the column has none)",
        ),
        ("size", "medium", "one of small, large"),
    ],
)
def test_a_refusal_says_what_the_column_takes_as_a_repository_filter_does(
    field: str, text: str, takes: str
) -> None:
    """One rule for a value from input: `parse_list_query()` reads it as `Repository.parse_query()` does."""
    with pytest.raises(InvalidQueryError) as caught:
        parse({field: text})

    assert str(caught.value) == f"the query parameter {field!r} must be {takes}"


def test_limit_and_offset_are_whole_numbers_with_a_sign_or_spaces_as_a_repositorys_limit() -> None:
    assert (parse({"limit": "+5", "offset": " 7 "}).limit, parse({"offset": "-0"}).offset) == (5, 0)


def test_a_column_whose_type_has_no_text_form_is_no_filter_by_default() -> None:
    with pytest.raises(InvalidQueryError, match="unknown query parameter 'extra'"):
        parse({"extra": "{}"})


def test_only_the_filterable_fields_are_filters() -> None:
    with pytest.raises(InvalidQueryError, match="the filters are: note;"):
        parse({"weight": "1"}, filterable=["note"])


def test_only_the_sortable_fields_sort() -> None:
    assert parse({"sort": "-note"}, sortable=["note"]).order_by == ("-note", "id")
    with pytest.raises(InvalidQueryError, match="'sort'"):
        parse({"sort": "weight"}, sortable=["note"])


def test_sort_keys_keep_their_order_and_the_primary_key_is_not_repeated() -> None:
    assert parse({"sort": "paid,-id,note"}).order_by == ("paid", "-id", "note")


@pytest.mark.parametrize("text", ["note,note", "note,-note", "", "note,"])
def test_a_sort_naming_a_field_twice_or_nothing_is_refused(text: str) -> None:
    with pytest.raises(InvalidQueryError, match="'sort'"):
        parse({"sort": text})


def test_a_string_primary_key_ends_the_order_of_the_reference_model() -> None:
    assert parse({"sort": "name"}, User).order_by == ("name", "id")


@pytest.mark.parametrize(
    ("name", "text"), [("limit", "0"), ("limit", "101"), ("limit", "ten"), ("offset", "-1")]
)
def test_limits_and_offsets_out_of_range_are_refused(name: str, text: str) -> None:
    with pytest.raises(InvalidQueryError, match=repr(name)):
        parse({name: text})


def test_the_limit_is_bounded_by_max_limit() -> None:
    assert parse({"limit": "500"}, max_limit=500).limit == 500
    assert parse({}, default_limit=10).limit == 10


def test_a_parameter_given_twice_is_refused() -> None:
    with pytest.raises(InvalidQueryError, match="more than once"):
        parse([("note", "a"), ("note", "b")])


def test_an_unknown_parameter_is_refused_naming_the_filters() -> None:
    with pytest.raises(InvalidQueryError, match="unknown query parameter 'colour'"):
        parse({"colour": "red"}, User)


def test_ignored_parameters_are_left_to_the_handler() -> None:
    assert parse({"format": "csv", "note": "x"}, ignore=["format"]).equals == {"note": "x"}


def test_a_long_unknown_name_is_cut_short_in_the_message() -> None:
    with pytest.raises(InvalidQueryError) as caught:
        parse({"x" * 500: "1"})

    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"filterable": ["nope"]}, "no mapped column 'nope' to filter by"),
        ({"filterable": ["extra"]}, "cannot be filtered from a query string"),
        ({"sortable": ["nope"]}, "no mapped column 'nope' to sort by"),
        ({"max_limit": 0}, "max_limit"),
        ({"default_limit": 20, "max_limit": 10}, "exceeds max_limit"),
    ],
)
def test_impossible_options_are_the_applications_mistake_not_the_clients(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(uow.InvalidArgumentError, match=message) as caught:
        parse({}, **options)

    assert not isinstance(caught.value, InvalidQueryError)


def test_an_unmapped_class_is_refused() -> None:
    with pytest.raises(uow.InvalidArgumentError, match="mapped class"):
        parse({}, object)
