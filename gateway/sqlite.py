"""The gateway's SQLite file, opened and written the same way by every embedded store (keys and
tenants, usage, safety policies, LoRA adapters).

One connection per file per process (`open_stores` opens it once and every embedded store
shares it; a store given a path opens its own), shared by the event loop and worker threads
behind a lock. WAL, so
readers never wait for a writer and several worker processes can share the file; synchronous
NORMAL, which in WAL mode cannot corrupt the file (a power cut can only lose the last commits);
write transactions take the write lock up front (BEGIN IMMEDIATE), so two processes never
deadlock upgrading a read lock to a write lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_S = 5.0


class SqliteFile:
    """One connection to the file; closed when the last store using it closes."""

    def __init__(self, path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._users = 0
        self._db = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")

    def used_with(self, schema: str) -> SqliteFile:
        """This file for one more store, its tables created if missing."""
        with self._lock:
            self._db.executescript(schema)
            self._users += 1
        return self

    def add_columns(self, table: str, columns: dict[str, str]) -> None:
        """Add to `table` those of `columns` (name -> type) it lacks: a store's schema grown
        since the file was made (CREATE TABLE IF NOT EXISTS leaves an old table as it is)."""
        with self.transaction() as db:
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns.items():
                if name not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def read(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    def close(self) -> None:
        """One store is done with the file; the last one closes the connection."""
        with self._lock:
            self._users -= 1
            if self._users <= 0:
                self._db.close()


def sqlite_file(source: Path | SqliteFile, busy_timeout_s: float, schema: str) -> SqliteFile:
    """A store's file: `source` shared when it is an open file, else the file at that path
    opened for the store alone; `schema` applied either way."""
    file = source if isinstance(source, SqliteFile) else SqliteFile(source, busy_timeout_s)
    return file.used_with(schema)
