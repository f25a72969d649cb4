"""Filters and sort keys of the in-memory repositories, evaluated in Python with SQL's rules.

Only what can be evaluated faithfully is accepted: a column of the repository's model compared with a
value (`==`, `!=`, `<`, `<=`, `>`, `>=`, `is_`, `is_not`, `in_`, `not_in`,
`like`, `ilike`, `startswith`, `endswith`, `contains` and their negations), combined with
`and_`, `or_` and `not_`. Anything else raises `UnsupportedExpressionError`: an
expression the fake cannot evaluate never matches everything, and never nothing either.

Comparisons follow SQL's three-valued logic: a comparison with `NULL` is unknown, so
`Account.email != "x"` does not match a row whose `email` is `NULL`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Mapper
from sqlalchemy.sql import elements, operators

from uow._errors import InvalidArgumentError

__all__ = ["Predicate", "SortKey", "UnsupportedExpressionError", "predicate", "sort_keys", "sort_rows"]

E = TypeVar("E")
Row = dict[str, Any]
Predicate = Callable[[Row], bool | None]
"""A compiled filter: `True`, `False` or `None` (SQL's unknown) for a row of field values."""
SortKey = tuple[str, bool, bool]
"""One sort key: the field, whether descending, and whether `NULL` sorts first."""


class UnsupportedExpressionError(InvalidArgumentError):
    """An in-memory repository was given a filter or sort expression it cannot evaluate.

    The fake refuses it rather than guess; run the code under test on a real unit (for example with the
    `uow_session_factory` fixture) for queries like this one.
    """

    def __init__(self, model: type[Any], expression: str, usage: str = "filter") -> None:
        self.model = model
        self.expression = expression
        super().__init__(
            f"the in-memory repository of {model.__name__} cannot evaluate the {usage} {expression}: "
            f"it supports a column of {model.__name__} compared with a value (==, !=, <, <=, >, >=, "
            "is_, is_not, in_, not_in, like, ilike, startswith, endswith, contains), combined with "
            "and_, or_ and not_; sort keys are columns, optionally .asc() or .desc(). "
            "Test this query against a real database instead"
        )


def _compare(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool | None]:
    def compare(left: Any, right: Any) -> bool | None:
        if left is None or right is None:
            return None
        return bool(op(left, right))

    return compare


def _is(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return left is None and right is None
    return bool(left == right)


def _in(left: Any, right: Any) -> bool | None:
    if left is None:
        return None if right else False
    values = list(right)
    if left in [value for value in values if value is not None]:
        return True
    return None if None in values else False


def _like_pattern(pattern: str, escape: str | None, flags: int) -> re.Pattern[str]:
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if escape is not None and char == escape:
            parts.append(re.escape(next(chars, "")))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), flags | re.DOTALL)


def _like(flags: int) -> Callable[[Any, Any, str | None], bool | None]:
    def like(value: Any, pattern: Any, escape: str | None) -> bool | None:
        if value is None or pattern is None:
            return None
        return _like_pattern(str(pattern), escape, flags).fullmatch(str(value)) is not None

    return like


_COMPARISONS: dict[Any, Callable[[Any, Any], bool | None]] = {
    operators.eq: _compare(operator.eq),
    operators.ne: _compare(operator.ne),
    operators.lt: _compare(operator.lt),
    operators.le: _compare(operator.le),
    operators.gt: _compare(operator.gt),
    operators.ge: _compare(operator.ge),
    operators.is_: _is,
    operators.is_not: lambda left, right: not _is(left, right),
    operators.is_not_distinct_from: _is,
    operators.is_distinct_from: lambda left, right: not _is(left, right),
    operators.in_op: _in,
}
_NEGATED: dict[Any, Any] = {operators.not_in_op: operators.in_op}
_LIKES: dict[Any, tuple[Callable[[Any, Any, str | None], bool | None], bool]] = {
    operators.like_op: (_like(0), False),
    operators.not_like_op: (_like(0), True),
    operators.ilike_op: (_like(re.IGNORECASE), False),
    operators.not_ilike_op: (_like(re.IGNORECASE), True),
}
_AFFIXES: dict[Any, tuple[Callable[[str, str], bool], bool]] = {
    operators.startswith_op: (str.startswith, False),
    operators.not_startswith_op: (str.startswith, True),
    operators.endswith_op: (str.endswith, False),
    operators.not_endswith_op: (str.endswith, True),
    operators.contains_op: (lambda value, part: part in value, False),
    operators.not_contains_op: (lambda value, part: part in value, True),
}


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


class _Compiler:
    """Turns the expressions of one query on `mapper` into Python, or refuses them."""

    def __init__(self, mapper: Mapper[Any], render: Callable[[Any], str]) -> None:
        self.mapper = mapper
        self.render = render

    def refuse(self, expression: Any, usage: str = "filter") -> UnsupportedExpressionError:
        return UnsupportedExpressionError(self.mapper.class_, self.render(expression), usage)

    def field(self, element: Any) -> str | None:
        """The field name of `element` if it is a column of the model, else `None`."""
        if hasattr(element, "__clause_element__"):
            element = element.__clause_element__()
        if not isinstance(element, elements.ColumnClause):
            return None
        try:
            prop = self.mapper.get_property_by_column(element)
        except (sa_exc.NoReferenceError, sa_exc.InvalidRequestError, KeyError):
            return None
        key: str = prop.key
        return key

    def operand(self, element: Any, whole: Any) -> Callable[[Row], Any]:
        field = self.field(element)
        if field is not None:
            return lambda row: row.get(field)
        if isinstance(element, elements.BindParameter):
            value = element.effective_value
            return lambda row: value
        if isinstance(element, elements.Null):
            return lambda row: None
        raise self.refuse(whole)

    def compile(self, clause: Any) -> Predicate:
        if hasattr(clause, "__clause_element__"):
            clause = clause.__clause_element__()
        if isinstance(clause, elements.Grouping):
            return self.compile(clause.element)
        if isinstance(clause, elements.True_):
            return lambda row: True
        if isinstance(clause, elements.False_):
            return lambda row: False
        if isinstance(clause, elements.BooleanClauseList):
            return self.combine(clause)
        if isinstance(clause, elements.UnaryExpression) and clause.operator is operators.inv:
            inner = self.compile(clause.element)
            return lambda row: _not(inner(row))
        if isinstance(clause, elements.BinaryExpression):
            return self.binary(clause)
        raise self.refuse(clause)

    def combine(self, clause: elements.BooleanClauseList) -> Predicate:
        parts = [self.compile(part) for part in clause.clauses]
        if clause.operator is operators.and_:

            def every(row: Row) -> bool | None:
                results = [part(row) for part in parts]
                if False in results:
                    return False
                return None if None in results else True

            return every
        if clause.operator is operators.or_:

            def some(row: Row) -> bool | None:
                results = [part(row) for part in parts]
                if True in results:
                    return True
                return None if None in results else False

            return some
        raise self.refuse(clause)

    def binary(self, clause: elements.BinaryExpression[Any]) -> Predicate:
        op = clause.operator
        negate = op in _NEGATED
        op = _NEGATED.get(op, op)
        if op is operators.in_op and not (
            isinstance(clause.right, elements.BindParameter) and clause.right.expanding
        ):
            raise self.refuse(clause)
        left = self.operand(clause.left, clause)
        right = self.operand(clause.right, clause)
        compare = _COMPARISONS.get(op)
        if compare is not None:
            if negate:
                return lambda row: _not(compare(left(row), right(row)))
            return lambda row: compare(left(row), right(row))
        if op in _LIKES:
            like, negated = _LIKES[op]
            escape = clause.modifiers.get("escape")
            if negated:
                return lambda row: _not(like(left(row), right(row), escape))
            return lambda row: like(left(row), right(row), escape)
        if op in _AFFIXES and not clause.modifiers.get("autoescape") and not clause.modifiers.get("escape"):
            test, negated = _AFFIXES[op]

            def affix(row: Row) -> bool | None:
                value, part = left(row), right(row)
                if value is None or part is None:
                    return None
                return test(str(value), str(part)) != negated

            return affix
        raise self.refuse(clause)


def predicate(mapper: Mapper[Any], clauses: list[Any], render: Callable[[Any], str]) -> Predicate:
    """One predicate for all of `clauses` (their `AND`); refuses what it cannot evaluate."""
    compiler = _Compiler(mapper, render)
    parts = [compiler.compile(clause) for clause in clauses]

    def matches(row: Row) -> bool | None:
        result: bool | None = True
        for part in parts:
            value = part(row)
            if value is False:
                return False
            if value is None:
                result = None
        return result

    return matches


_DIRECTIONS = {operators.asc_op: False, operators.desc_op: True}
_NULLS = {operators.nulls_first_op: True, operators.nulls_last_op: False}


def sort_keys(mapper: Mapper[Any], ordering: list[Any], render: Callable[[Any], str]) -> list[SortKey]:
    """The sort keys for `ordering` (columns, optionally `.asc()`/`.desc()`/`.nulls_first()`).

    `NULL` sorts before every value in ascending order and after every value in descending order,
    as on SQLite and MariaDB (PostgreSQL does the opposite), unless `nulls_first()` or
    `nulls_last()` says otherwise.
    """
    compiler = _Compiler(mapper, render)
    keys: list[SortKey] = []
    for item in ordering:
        element = item.__clause_element__() if hasattr(item, "__clause_element__") else item
        nulls_first: bool | None = None
        descending = False
        if isinstance(element, elements.UnaryExpression) and element.modifier in _NULLS:
            nulls_first = _NULLS[element.modifier]
            element = element.element
        if isinstance(element, elements.UnaryExpression) and element.modifier in _DIRECTIONS:
            descending = _DIRECTIONS[element.modifier]
            element = element.element
        field = compiler.field(element)
        if field is None:
            raise compiler.refuse(item, "sort key")
        keys.append((field, descending, (not descending) if nulls_first is None else nulls_first))
    return keys


def sort_rows(rows: list[E], keys: list[SortKey], values: Callable[[E], Row]) -> None:
    """Sort `rows` in place, stably, by `keys`; `values` gives the field values of a row."""
    for field, descending, nulls_first in reversed(keys):
        present = [entry for entry in rows if values(entry).get(field) is not None]
        missing = [entry for entry in rows if values(entry).get(field) is None]
        present.sort(key=lambda entry: values(entry)[field], reverse=descending)
        rows[:] = missing + present if nulls_first else present + missing
