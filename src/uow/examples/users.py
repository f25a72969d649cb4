"""The reference scenario, written with :class:`~uow.UnitOfWork` and :class:`~uow.Repository`.

Bob and LILY are added with the same id and rolled back before anything reaches the database;
hanmeimei is added and committed, then read back; leaving the block closes the session.

Run it with ``python -m uow.examples.users`` (an in-memory SQLite database, SQL log on), or point it
elsewhere with ``--url``; ``--quiet`` turns the SQL log off.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy import Engine, String, create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from uow import UnitOfWork, UnitOfWorkError

__all__ = ["Base", "User", "main", "run"]


class Base(DeclarativeBase):
    """The declarative base of the example's tables."""


class User(Base):
    """A user with a short string id and a name."""

    __tablename__ = "user"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(20))

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, name={self.name!r})"


def run(engine: Engine) -> None:
    """Create the table if needed, then play the scenario on ``engine``, printing what it reads."""
    Base.metadata.create_all(engine)
    Session = sessionmaker(bind=engine)

    with UnitOfWork(Session) as unit:
        users = unit.repository(User)

        users.add(User(id="5", name="Bob"))
        users.add(User(id="5", name="LILY"))
        unit.rollback()

        users.add(User(id="7", name="hanmeimei"))
        unit.commit()

        user = users.one(id="7")
        print("type:", type(user))
        print("name:", user.name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m uow.examples.users",
        description="Run uow's reference scenario: a rollback, then a commit and a read.",
    )
    parser.add_argument(
        "--url",
        default="sqlite://",
        help="database URL (default: an in-memory SQLite database)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log the SQL statements")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario as the command line asks; returns the process exit status."""
    options = _parser().parse_args(argv)
    try:
        engine = create_engine(options.url, echo=not options.quiet)
    except (sa_exc.ArgumentError, ImportError) as exc:
        print(f"error: cannot use database URL {options.url!r}: {_first_line(exc)}", file=sys.stderr)
        return 2
    try:
        run(engine)
    except (sa_exc.SQLAlchemyError, UnitOfWorkError) as exc:
        print(f"error: {_first_line(exc)}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
