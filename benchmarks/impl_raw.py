"""The raw driver: ``sqlite3`` or ``psycopg`` on one connection, SQL written by hand.

The floor under every other implementation: no pool, no statement building, no objects. Each unit
ends with ``commit()`` or ``rollback()`` on the connection, as the others end their transactions.
"""

from __future__ import annotations

from typing import Any

from benchmarks.base import Implementation
from benchmarks.models import TABLES, bulk_tuples, category, name, page_checksum, score, w3_ident, w5_page
from benchmarks.settings import PAGE_SIZE


class Raw(Implementation):
    name = "raw"

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.connection = env.raw_connection()
        mark = "%s" if env.dialect == "postgresql" else "?"
        insert = "INSERT INTO {} (name, category, score) VALUES ({m}, {m}, {m})"
        self.insert = {key: insert.format(TABLES[key].name, m=mark) for key in ("W1", "W2", "W4")}
        self.get = f"SELECT id, name, category, score FROM {TABLES['W3'].name} WHERE id = {mark}"
        self.page = (
            f"SELECT id, name, category, score FROM {TABLES['W5'].name} WHERE category = {mark} "
            f"ORDER BY score DESC, id LIMIT {mark} OFFSET {mark}"
        )
        user = '"user"'
        self.user_insert = f"INSERT INTO {user} (id, name) VALUES ({mark}, {mark})"
        self.user_get = f"SELECT id, name FROM {user} WHERE id = {mark}"

    def close(self) -> None:
        if self.env.backend.name != "sqlite-memory":  # that one belongs to the engine's pool
            self.connection.close()

    def w1(self, n: int, seeded: int) -> int:
        connection, sql = self.connection, self.insert["W1"]
        for i in range(n):
            connection.execute(sql, (name(i), category(i), score(i)))
            connection.commit()
        return n

    def w2(self, n: int, seeded: int) -> int:
        connection = self.connection
        cursor = connection.cursor()
        try:
            cursor.executemany(self.insert["W2"], bulk_tuples(n))
        finally:
            cursor.close()
        connection.commit()
        return n

    def w3(self, n: int, seeded: int) -> int:
        connection, sql = self.connection, self.get
        total = 0
        for i in range(n):
            row = connection.execute(sql, (w3_ident(i, seeded),)).fetchone()
            connection.rollback()
            total += row[3]
        return total

    def w4(self, n: int, seeded: int) -> int:
        connection, sql = self.connection, self.insert["W4"]
        inserted = 0
        for i in range(n):
            inserted += connection.execute(sql, (name(i), category(i), score(i))).rowcount
            connection.rollback()
        return inserted

    def w5(self, n: int, seeded: int) -> int:
        connection, sql = self.connection, self.page
        total = 0
        for q in range(n):
            cat, offset = w5_page(q, seeded)
            rows = connection.execute(sql, (cat, PAGE_SIZE, offset)).fetchall()
            connection.rollback()
            total += page_checksum([row[0] for row in rows])
        return total

    def w6(self, n: int, seeded: int) -> int:
        connection = self.connection
        found = 0
        for i in range(n):
            connection.rollback()  # Bob and LILY never reached the database: nothing to send
            connection.execute(self.user_insert, (f"u{i}", "hanmeimei"))
            connection.commit()
            row = connection.execute(self.user_get, (f"u{i}",)).fetchone()
            connection.rollback()
            found += row[1] == "hanmeimei"
        return found
