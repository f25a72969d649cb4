"""Checked by ``mypy --strict`` in CI: the real units and the in-memory ones satisfy the same Protocols."""

from __future__ import annotations

from typing import assert_type

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from tests.models import Account, AsyncUserRepository, User, UserRepository
from uow import (
    AsyncRepository,
    AsyncRepositoryProtocol,
    AsyncUnitOfWork,
    AsyncUnitOfWorkProtocol,
    Repository,
    RepositoryProtocol,
    UnitOfWork,
    UnitOfWorkProtocol,
)
from uow.testing import (
    AsyncInMemoryRepository,
    AsyncInMemoryUnitOfWork,
    InMemoryRepository,
    InMemoryStore,
    InMemoryUnitOfWork,
)


def register(unit: UnitOfWorkProtocol, user_id: str) -> None:
    """Application code written against the interface."""
    with unit:
        users = unit.repository(User)
        assert_type(users, RepositoryProtocol[User])
        assert_type(users.add(User(id=user_id)), User)
        assert_type(users.get(user_id), User | None)
        assert_type(users.list(User.name == "ann", order_by="-name", limit=5), list[User])
        assert_type(unit.repository(UserRepository), UserRepository)
        assert_type(unit.repository(UserRepository).named("ann"), list[User])
        assert_type(unit.repository(Account).get_one(1).balance, int)
        assert_type(unit.repository(Account).page(order_by="id").next, str | None)
        assert_type(unit.repository(Account).upsert({"id": 1}), Account)
        with unit.savepoint():
            unit.on_commit(lambda: None)
            unit.on_rollback(print, robust=True)
        unit.commit()
        unit.rollback()


async def register_async(unit: AsyncUnitOfWorkProtocol, user_id: str) -> None:
    async with unit:
        users = unit.repository(User)
        assert_type(users, AsyncRepositoryProtocol[User])
        assert_type(await users.add(User(id=user_id)), User)
        assert_type(await users.count(), int)
        assert_type(await users.get_or_create(id=user_id), tuple[User, bool])
        assert_type(await unit.repository(AsyncUserRepository).named("ann"), list[User])
        async for user in await users.stream(order_by="id"):
            assert_type(user, User)
        async with unit.savepoint():
            unit.on_commit(lambda: None)
        await unit.commit()


def both_units_conform(factory: sessionmaker[Session], store: InMemoryStore) -> None:
    register(UnitOfWork(factory), "1")
    register(InMemoryUnitOfWork(store), "1")
    real: RepositoryProtocol[User] = Repository(factory(), User)
    fake: RepositoryProtocol[User] = InMemoryUnitOfWork(store).repository(User)
    assert real is not fake


async def both_async_units_conform(factory: async_sessionmaker[AsyncSession], store: InMemoryStore) -> None:
    await register_async(AsyncUnitOfWork(factory), "1")
    await register_async(AsyncInMemoryUnitOfWork(store), "1")
    real: AsyncRepositoryProtocol[User] = AsyncRepository(factory(), User)
    fake: AsyncRepositoryProtocol[User] = AsyncInMemoryUnitOfWork(store).repository(User)
    assert real is not fake


class InMemoryUsers(InMemoryRepository[User]):
    pass


def the_fakes_keep_the_real_types(store: InMemoryStore) -> None:
    with InMemoryUnitOfWork(store) as unit:
        assert_type(unit.repository(InMemoryUsers), InMemoryUsers)
        assert_type(unit, InMemoryUnitOfWork)
        assert_type(unit.repository(User), InMemoryRepository[User])
        assert_type(unit.repository(UserRepository), UserRepository)
        assert_type(unit.store, InMemoryStore)


async def the_async_fakes_keep_the_real_types(store: InMemoryStore) -> None:
    async with AsyncInMemoryUnitOfWork(store) as unit:
        assert_type(unit.repository(User), AsyncInMemoryRepository[User])
        assert_type(unit.repository(AsyncUserRepository), AsyncUserRepository)
