"""The reference scenario, written with [`UnitOfWork`][uow.UnitOfWork] and [`Repository`][uow.Repository].

Bob and LILY are added with the same id and rolled back before anything reaches the database;
hanmeimei is added and committed, then read back; leaving the block closes the session.

Run it with `python -m uow.examples.users` (an in-memory SQLite database, SQL log on), or point it
elsewhere with `--url`; `--quiet` turns the SQL log off; `--async` plays it with
[`AsyncUnitOfWork`][uow.AsyncUnitOfWork] (on `sqlite+aiosqlite://` unless `--url` names another async driver).
A URL whose driver does not suit the flavour (an async driver without `--async`, a sync one with it)
is refused with one line on stderr that says what to change, and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Engine, String, create_engine, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from uow import AsyncUnitOfWork, UnitOfWork, UnitOfWorkError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Base", "User", "main", "run", "run_async"]


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
    """Create the table if needed, then play the scenario on `engine`, printing what it reads."""
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


async def run_async(engine: AsyncEngine) -> None:
    """The same scenario with [`AsyncUnitOfWork`][uow.AsyncUnitOfWork] on an async engine."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    Session = async_sessionmaker(engine)

    async with AsyncUnitOfWork(Session) as unit:
        users = unit.repository(User)

        await users.add(User(id="5", name="Bob"))
        await users.add(User(id="5", name="LILY"))
        await unit.rollback()

        await users.add(User(id="7", name="hanmeimei"))
        await unit.commit()

        user = await users.one(id="7")
        print("type:", type(user))
        print("name:", user.name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m uow.examples.users",
        description="Run uow's reference scenario: a rollback, then a commit and a read.",
    )
    parser.add_argument(
        "--url",
        help="database URL (default: an in-memory SQLite database, sqlite:// or sqlite+aiosqlite://)",
    )
    parser.add_argument(
        "--async",
        dest="use_async",
        action="store_true",
        help="run with AsyncUnitOfWork; the URL must name an async driver (asyncpg, aiosqlite, aiomysql)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log the SQL statements")
    return parser


_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mysql": "aiomysql", "mariadb": "aiomysql"}
"""The async driver to suggest for each database, with the extra of uow that installs it."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario as the command line asks; returns the process exit status."""
    options = _parser().parse_args(argv)
    if options.use_async:
        return _main_with_async(options.url or "sqlite+aiosqlite://", echo=not options.quiet)
    url = options.url or "sqlite://"
    try:
        parsed = make_url(url)
        if parsed.get_dialect().is_async:
            return _fail(
                f"{parsed.drivername} is an async driver: add --async to run the example with "
                "AsyncUnitOfWork, or name a sync driver",
                2,
            )
        engine = create_engine(url, echo=not options.quiet)
    except (sa_exc.ArgumentError, ImportError) as exc:
        return _fail(f"cannot use database URL {url!r}: {_first_line(exc)}", 2)
    try:
        run(engine)
    except (sa_exc.SQLAlchemyError, UnitOfWorkError, OSError) as exc:
        return _fail(_first_line(exc), 1)
    finally:
        engine.dispose()
    return 0


def _main_with_async(url: str, *, echo: bool) -> int:
    try:
        backend = make_url(url).get_backend_name()
    except sa_exc.ArgumentError as exc:
        return _fail(f"cannot use database URL {url!r}: {_first_line(exc)}", 2)
    if importlib.util.find_spec("greenlet") is None:
        return _fail(_async_hint(backend, "greenlet is not installed"), 2)
    try:
        return asyncio.run(_main_async(url, backend, echo=echo))
    except ImportError as exc:  # what the async parts of SQLAlchemy raise without greenlet
        return _fail(_async_hint(backend, _first_line(exc)), 2)


def _async_hint(backend: str, problem: str) -> str:
    """Why `--async` cannot run, and the driver that the URL's database needs."""
    driver = _ASYNC_DRIVERS.get(backend)
    if driver is None:
        return f"--async: {problem}; {backend} needs an async driver in the URL"
    return (
        f"--async: {problem}; {backend} needs an async driver such as {backend}+{driver} "
        f"(pip install 'uow[{driver}]')"
    )


async def _main_async(url: str, backend: str, *, echo: bool) -> int:
    # Imported here: the async parts need greenlet, which plain `pip install uow` does not bring.
    from sqlalchemy.ext.asyncio import create_async_engine

    try:
        engine = create_async_engine(url, echo=echo)
    except sa_exc.ArgumentError as exc:
        return _fail(f"cannot use database URL {url!r}: {_first_line(exc)}", 2)
    except ImportError as exc:  # the driver is not installed
        problem = f"{exc.name} is not installed" if exc.name else _first_line(exc)
        return _fail(_async_hint(backend, problem), 2)
    except sa_exc.InvalidRequestError:  # the URL names a driver that is not async
        driver = make_url(url).get_dialect().driver
        return _fail(_async_hint(backend, f"{backend}+{driver} is a sync driver"), 2)
    try:
        await run_async(engine)
    except (sa_exc.SQLAlchemyError, UnitOfWorkError, OSError) as exc:
        return _fail(_first_line(exc), 1)
    finally:
        await engine.dispose()
    return 0


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
