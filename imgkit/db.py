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
import functools
import json
import threading
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Generic, TypeVar
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from imgkit.errors import ConfigError, ServiceUnavailable

Row = dict[str, Any]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


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
        self._writers: dict[tuple[str, float, float, float | None], BatchWriter] = {}
        # Our own threads: calls waiting for the engine must not occupy the default pool,
        # which extraction and file writes use (they would starve behind the lock).
        # chDB serialises anyway, so one thread; a server takes a few at once.
        self._executor = ThreadPoolExecutor(1 if self.embedded else 4, thread_name_prefix="clickhouse")

    def writer(self, table: str, linger: float = 0.0, spacing: float = 0.0,
               quiet: float | None = None) -> BatchWriter:
        """The shared write-behind batcher of `table` with these timings (see BatchWriter).
        Callers that can wait longer get bigger batches from their own."""
        key = (table, linger, spacing, quiet)
        if key not in self._writers:
            self._writers[key] = BatchWriter(self, table, linger=linger, spacing=spacing, quiet=quiet)
        return self._writers[key]

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.embedded:
            return fn(*args, **kwargs)
        with self._lock:
            return fn(*args, **kwargs)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._run, fn, *args,
                                                                            **kwargs))

    async def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        return await self._call(self._client.command, sql, parameters=parameters)

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[Row]:
        def run() -> list[Row]:
            result = self._client.query(sql, parameters=dict(parameters or {}))
            return list(result.named_results())

        return await self._call(run)

    async def query_one(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Row | None:
        rows = await self.query(sql, parameters)
        return rows[0] if rows else None

    async def insert(self, table: str, rows: Sequence[Row]) -> None:
        """Insert a batch as one INSERT with the rows inline as JSONEachRow.

        Not Arrow, though Arrow is the faster format for 100k rows: ImgKit's inserts are
        batches of tens of rows, where the fixed cost wins. clickhouse-connect hands chDB an
        Arrow or Native insert through a temporary file (create, write, INSERT FROM INFILE,
        unlink), while a command carries its data inline. Measured on chDB for 1-10 rows of
        `images`: 5.7-8 ms of CPU against 8.7-10.4 ms; Arrow wins from about 100 rows of
        2 KB (17 against 20 ms; tests/bench/bench_storage.py)."""
        if not rows:
            return
        await self._call(self._client.command, f"INSERT INTO {table} FORMAT JSONEachRow",
                         data=json_rows(rows))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            self._client.close()
            if self._dir_lock:
                self._dir_lock.close()
                self._dir_lock = None


def _json_default(value: object) -> object:
    if isinstance(value, datetime):  # DateTime64(3) text, in UTC; naive times are taken as UTC
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond // 1000:03d}"
    raise TypeError(f"cannot store a {type(value).__name__} in ClickHouse: {value!r}")


_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default)


def json_rows(rows: Sequence[Row]) -> bytes:
    """`rows` as JSONEachRow. Text that is not valid Unicode (lone surrogates, as a broken
    EXIF string can decode to) is stored with '?' in their place rather than failing the
    batch or storing bytes that no UTF-8 reader can decode. NaN and infinities pass as
    ClickHouse reads them (`NaN`, `Infinity`)."""
    return "\n".join(map(_ROW_ENCODER.encode, rows)).encode("utf-8", "replace")


class BatchWriter:
    """Coalesces single-row inserts from concurrent callers into one insert per table.

    Every chDB call holds the engine for ~10 ms whatever its size, so a busy
    process that inserts row by row spends its time waiting on the lock. Callers
    still await their own row's durability: `write` returns once the insert that
    carried it has succeeded (or raises its error). While one insert runs, rows
    that arrive wait and go together in the next.

    Two ways to wait for company: `linger` delays every batch (for bursts of callers
    that arrive together, like concurrent POSTs), `spacing` only keeps inserts at
    least that far apart: under a steady flow each insert carries `spacing` seconds
    of rows, while a row that comes after a quiet spell is written at once.

    `quiet` cuts the spacing short once rows stop coming: a batch waiting out the
    spacing goes as soon as no row has arrived for `quiet` seconds. A flow that ends
    (the last images of a burst) then waits `quiet`, not the rest of `spacing`, while
    a busy flow, whose rows arrive closer together than that, keeps the long spacing.
    """

    def __init__(self, db: Database, table: str, max_rows: int = 1000, linger: float = 0.0,
                 spacing: float = 0.0, quiet: float | None = None) -> None:
        self.db = db
        self.table = table
        self.max_rows = max_rows
        self.linger = linger  # seconds to wait for more rows before the first insert
        self.spacing = spacing  # least seconds between the starts of two inserts...
        self.quiet = quiet  # ...unless no row has arrived for this long (None: always)
        self._last_insert = float("-inf")
        self._last_arrival = float("-inf")
        self._pending: list[tuple[Row, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, row: Row) -> None:
        await self.write_many([row])

    async def write_many(self, rows: Sequence[Row]) -> None:
        """Queue rows for the next insert and wait until it has stored them."""
        if not rows:
            return
        loop = asyncio.get_running_loop()
        self._last_arrival = loop.time()
        futures = []
        for row in rows:
            future: asyncio.Future[None] = loop.create_future()
            self._pending.append((row, future))
            futures.append(future)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await asyncio.gather(*futures)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.linger)  # let concurrent callers join the first insert
        while self._pending:
            # Sleep to the nearer deadline and look again: rows that came meanwhile moved the
            # quiet one. (An Event per arrival would wake this task for every row.)
            while (wait := self._wait(loop.time())) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait)
            self._last_insert = loop.time()
            batch, self._pending = self._pending[:self.max_rows], self._pending[self.max_rows:]
            try:
                await self.db.insert(self.table, [row for row, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    def _wait(self, now: float) -> float:
        """Seconds the pending batch should still wait for company, at `now`."""
        wait = self._last_insert + self.spacing - now
        if self.quiet is not None:
            wait = min(wait, self._last_arrival + self.quiet - now)
        return wait


class BatchLoader(Generic[K, V]):
    """DataLoader for reads by key: lookups made in the same moment share one query."""

    def __init__(self, fetch_many: Callable[[list[K]], Awaitable[dict[K, V]]], max_keys: int = 1000) -> None:
        self.fetch_many = fetch_many
        self.max_keys = max_keys
        self._pending: dict[K, list[asyncio.Future[V | None]]] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def load(self, key: K) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append(future)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)
        while self._pending:
            keys = list(self._pending)[:self.max_keys]
            waiters = {k: self._pending.pop(k) for k in keys}
            try:
                found = await self.fetch_many(keys)
            except Exception as exc:
                for futures in waiters.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for key, futures in waiters.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(key))
