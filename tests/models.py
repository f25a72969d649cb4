"""Models the specifications use beside the reference scenario's ``User``."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from uow import AsyncRepository, HasEvents, Repository
from uow.examples.users import User


class Base(DeclarativeBase):
    pass


class Account(HasEvents, Base):
    """An account: NOT NULL and UNIQUE columns, an integer key, a relationship, domain events."""

    __tablename__ = "uow_account"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    owner: Mapped[str] = mapped_column(String(40))
    balance: Mapped[int] = mapped_column(default=0)
    email: Mapped[str | None] = mapped_column(String(80), unique=True)
    tags: Mapped[list[Tag]] = relationship(back_populates="account", cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"Account({self.id}, {self.owner!r}, {self.balance})"


class Tag(Base):
    __tablename__ = "uow_tag"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    account_id: Mapped[int] = mapped_column(ForeignKey("uow_account.id"))
    label: Mapped[str] = mapped_column(String(20))
    account: Mapped[Account] = relationship(back_populates="tags")


class Transfer(Base):
    """The log of money moved between accounts: one row per transfer, so none is applied twice."""

    __tablename__ = "uow_transfer"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[int]
    target: Mapped[int]
    amount: Mapped[int]


class Doctor(Base):
    """Doctors on call: the classic write-skew example."""

    __tablename__ = "uow_doctor"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    on_call: Mapped[bool]


class UserRepository(Repository[User]):
    """A user's own repository: adds a query of its own."""

    def named(self, name: str) -> list[User]:
        return self.list(name=name, order_by="id")


class AsyncUserRepository(AsyncRepository[User]):
    async def named(self, name: str) -> list[User]:
        return await self.list(name=name, order_by="id")


__all__ = [
    "Account",
    "AsyncUserRepository",
    "Base",
    "Doctor",
    "Tag",
    "Transfer",
    "User",
    "UserRepository",
]
