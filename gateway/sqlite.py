"""The gateway's SQLite file, opened and written the same way by every embedded store (keys and
tenants, usage, safety policies, LoRA adapters).

One connection per store, shared by the event loop and worker threads behind a lock. WAL, so
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


class SqliteFile:
    def __init__(self, path: Path, busy_timeout_s: float, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(schema)

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
        with self._lock:
            self._db.close()
