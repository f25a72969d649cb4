"""Checked by ``mypy --strict`` in CI: what the public API's types tell an IDE and a type checker."""

from __future__ import annotations

from typing import assert_type

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, selectinload, sessionmaker

from tests.models import Account, AsyncUserRepository, User, UserRepository
from uow import AsyncRepository, AsyncUnitOfWork, Lock, Page, ParsedQuery, Repository, UnitOfWork


def sync_api(factory: sessionmaker[Session]) -> None:
    with UnitOfWork(factory) as unit:
        assert_type(unit, UnitOfWork)
        assert_type(unit.session, Session)
        users = unit.repository(User)
        assert_type(users, Repository[User])
        assert_type(users.add(User(id="1")), User)
        assert_type(users.add_all([User(id="2")]), list[User])
        assert_type(users.get("1"), User | None)
        assert_type(users.get_one("1"), User)
        assert_type(users.list(User.name == "ann", order_by="-name", limit=5), list[User])
        assert_type(users.first(name="ann"), User | None)
        assert_type(users.one(id="1"), User)
        assert_type(users.count(), int)
        assert_type(users.exists(), bool)
        assert_type(unit.repository(UserRepository), UserRepository)
        assert_type(unit.repository(Account).get_one(1).balance, int)
        accounts = unit.repository(Account)
        assert_type(accounts.get(1, for_update=True, options=(selectinload(Account.tags),)), Account | None)
        assert_type(accounts.list(for_update=Lock(skip_locked=True), limit=10), list[Account])
        assert_type(accounts.get_one_or_none(owner="ann"), Account | None)
        assert_type(accounts.list_and_count(order_by="id", limit=20), tuple[list[Account], int])
        page = accounts.page(order_by="-balance", limit=20)
        assert_type(page, Page[Account])
        assert_type(page.items, list[Account])
        assert_type(page.next, str | None)
        assert_type(accounts.upsert({"id": 1, "owner": "ann"}), Account)
        assert_type(accounts.upsert_many([Account(id=2, owner="ben")], on="id"), list[Account])
        assert_type(accounts.get_or_create(id=1, defaults={"owner": "ann"}), tuple[Account, bool])
        assert_type(accounts.update_where({"balance": Account.balance + 1}, owner="ann"), int)
        assert_type(accounts.delete_where(Account.balance < 0), int)
        assert_type(accounts.parse_query({"owner": "ann"}), ParsedQuery)
        unit.commit()
        unit.rollback()


async def async_api(factory: async_sessionmaker[AsyncSession]) -> None:
    async with AsyncUnitOfWork(factory) as unit:
        assert_type(unit, AsyncUnitOfWork)
        assert_type(unit.session, AsyncSession)
        users = unit.repository(User)
        assert_type(users, AsyncRepository[User])
        assert_type(await users.add(User(id="1")), User)
        assert_type(await users.get("1"), User | None)
        assert_type(await users.get_one("1"), User)
        assert_type(await users.list(order_by=[User.name, "-id"]), list[User])
        assert_type(await users.one(id="1"), User)
        assert_type(await users.count(), int)
        assert_type(unit.repository(AsyncUserRepository), AsyncUserRepository)
        accounts = unit.repository(Account)
        assert_type(await accounts.get_one(1, for_update=True), Account)
        assert_type(await accounts.page(order_by="id"), Page[Account])
        assert_type(await accounts.list_and_count(limit=5), tuple[list[Account], int])
        assert_type(await accounts.upsert_many([{"id": 1, "owner": "ann"}]), list[Account])
        assert_type(await accounts.get_or_create(id=1), tuple[Account, bool])
        assert_type(await accounts.update_where({"owner": "x"}, id=1), int)
        assert_type(accounts.parse_filters([("owner", "eq", "ann")]), list[ColumnElement[bool]])
        await unit.commit()
        await unit.rollback()
