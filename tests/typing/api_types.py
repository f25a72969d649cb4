"""Checked by ``mypy --strict`` in CI: what the public API's types tell an IDE and a type checker."""

from __future__ import annotations

from typing import assert_type

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from tests.models import Account, AsyncUserRepository, User, UserRepository
from uow import AsyncRepository, AsyncUnitOfWork, Repository, UnitOfWork


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
        await unit.commit()
        await unit.rollback()
