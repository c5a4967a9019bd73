"""The one storage client: ClickHouse through clickhouse-connect, embedded or server.

`IMGKIT_CLICKHOUSE_URL` picks the backend: `chdb:///abs/path` runs ClickHouse's
engine inside this process (one process per directory: a second one fails to
lock it, which we turn into a readable error), `http(s)://...` talks to a server.
The client's calls are synchronous; chDB's release the GIL, so they run in a
worker thread, serialised by a lock because one chDB session is not meant to be
driven from several threads at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from imgkit.errors import ConfigError, ServiceUnavailable

Row = dict[str, Any]


def lock_directory(path: Path, url: str) -> IO[bytes]:
    """Hold an exclusive lock on the chDB directory for the life of the process.

    chDB's own refusal of a second process reads differently across versions
    ("Cannot lock file", "Error initializing EmbeddedServer"); our lock makes the
    answer certain and lets the message say what to do.
    """
    path.mkdir(parents=True, exist_ok=True)
    handle = open(path / ".imgkit.lock", "wb")  # noqa: SIM115 (held open while the db is)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(
            f"the embedded ClickHouse directory {path} is in use by another process; chDB allows "
            "one process per directory: stop the other ImgKit process, or give this one its own "
            "IMGKIT_DATA_DIR / IMGKIT_CLICKHOUSE_URL", url=url) from None
    return handle


def open_client(url: str) -> Client:
    """Connect to the backend named by `url`; raise a typed error that says what to do."""
    if url.startswith("chdb://"):
        path = Path(url.removeprefix("chdb://"))
        try:
            return clickhouse_connect.get_client(dsn=f"chdb://{path}")
        except Exception as exc:
            raise ConfigError(
                f"cannot open the embedded ClickHouse directory {path}: {exc}. chDB opens one "
                "directory per process: close the other Database first", url=url) from exc
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError("IMGKIT_CLICKHOUSE_URL must be chdb:///path or http(s)://host:port/db",
                          url=url)
    try:
        return clickhouse_connect.get_client(dsn=url)
    except Exception as exc:
        raise ServiceUnavailable(f"cannot reach ClickHouse at {parts.hostname}:{parts.port}: {exc}",
                                 url=parts._replace(netloc=parts.hostname or "").geturl()) from exc


class Database:
    """Async facade over one clickhouse-connect client."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.embedded = url.startswith("chdb://")
        self._dir_lock = lock_directory(Path(url.removeprefix("chdb://")), url) if self.embedded else None
        try:
            self._client = open_client(url)
        except BaseException:
            if self._dir_lock:
                self._dir_lock.close()
            raise
        self._lock = threading.Lock()

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(*args, **kwargs)

    async def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self._run, self._client.command, sql, parameters=parameters)

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[Row]:
        def run() -> list[Row]:
            result = self._client.query(sql, parameters=dict(parameters or {}))
            return list(result.named_results())

        return await asyncio.to_thread(self._run, run)

    async def query_one(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Row | None:
        rows = await self.query(sql, parameters)
        return rows[0] if rows else None

    async def insert(self, table: str, rows: Sequence[Row], schema: pa.Schema | None = None) -> None:
        """Insert a batch as one Arrow table: the fast path (100k rows ~0.6 s on chDB)."""
        if not rows:
            return
        arrow = pa.Table.from_pylist(list(rows), schema=schema)
        await asyncio.to_thread(self._run, self._client.insert_arrow, table, arrow)

    def close(self) -> None:
        with self._lock:
            self._client.close()
            if self._dir_lock:
                self._dir_lock.close()
                self._dir_lock = None
