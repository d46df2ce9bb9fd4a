"""The embedded stores share one SQLite connection per file per process."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.settings import StoreSettings
from gateway.sqlite import SqliteFile, sqlite_file
from gateway.stores import open_stores


def open_descriptors(path: Path) -> int:
    """How many of this process's file descriptors are open on `path` itself."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
        except OSError:
            continue
    return count


async def test_the_embedded_stores_open_the_file_once(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    stores = open_stores(StoreSettings(sqlite_path=path))
    assert open_descriptors(path) == 1
    for store in stores.all()[:-1]:
        await store.close()
    assert open_descriptors(path) == 1  # the last store still uses it
    await stores.all()[-1].close()
    assert open_descriptors(path) == 0


def test_a_store_given_a_path_opens_its_own_connection(tmp_path: Path) -> None:
    path = tmp_path / "own.db"
    shared = SqliteFile(path)
    first = sqlite_file(shared, 1.0, "CREATE TABLE IF NOT EXISTS a (x)")
    second = sqlite_file(path, 1.0, "CREATE TABLE IF NOT EXISTS b (x)")
    assert first is shared and second is not shared
    assert open_descriptors(path) == 2
    first.close()
    second.close()
    assert open_descriptors(path) == 0
