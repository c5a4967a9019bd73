"""Migrations and a round-trip through clickhouse-connect, on chDB and on a ClickHouse server."""

from __future__ import annotations

import asyncio
import itertools
import math
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from imgkit.db import Database, json_rows
from imgkit.errors import ConfigError
from schemas.migrate import load_migrations, migrate


async def roundtrip(db: Database) -> None:
    first = await migrate(db)
    assert [m.version for m in first] == [m.version for m in load_migrations()]
    assert await migrate(db) == []  # applied once
    now = datetime.now(UTC).replace(microsecond=123000)
    await db.insert("accounts", [
        {"id": "acc_1", "name": "old", "webhook_url": "", "signing_secrets": ["s1"],
         "created_at": now, "version": 1, "deleted": 0},
        {"id": "acc_1", "name": "new", "webhook_url": "https://x.test/h", "signing_secrets": ["s2", "s1"],
         "created_at": now, "version": 2, "deleted": 0},
    ])
    row = await db.query_one("SELECT * FROM accounts FINAL WHERE id = {id:String}", {"id": "acc_1"})
    assert row is not None
    assert row["name"] == "new" and row["signing_secrets"] == ["s2", "s1"]
    assert row["created_at"].replace(tzinfo=UTC) == now
    await values_roundtrip(db)


async def values_roundtrip(db: Database) -> None:
    """What Database.insert's JSONEachRow must carry: times (aware in another zone, naive as
    UTC, cut to milliseconds), NULL and NaN in Nullable floats, the top UInt64 version,
    text with quotes, newlines, NUL and non-ASCII, and text that is not valid Unicode."""
    paris = timezone(timedelta(hours=1))
    created = datetime(2026, 11, 28, 18, 30, 15, 987654, tzinfo=paris)
    naive = datetime(2001, 2, 3, 4, 5, 6, 7000)
    await db.insert("images", [{
        "account_id": "acc_v", "id": "img_v", "version": 2**63 - 1, "created_at": created,
        "updated_at": naive, "status": "completed", "url": "https://x.test/é \"q\"\n\x00/ü.jpg",
        "exif": '{"Make":"Ni\\"kon"}', "filename": "bad\udc80name", "iso": None,
        "f_number": float("nan"), "focal_length": 35.5, "taken_at": None, "gps_latitude": -33.5}])
    row = await db.query_one("SELECT * FROM images WHERE id = 'img_v'")
    assert row is not None
    assert row["version"] == 2**63 - 1
    assert row["created_at"].replace(tzinfo=UTC) == datetime(2026, 11, 28, 17, 30, 15, 987000, tzinfo=UTC)
    assert row["updated_at"].replace(tzinfo=UTC) == datetime(2001, 2, 3, 4, 5, 6, 7000, tzinfo=UTC)
    assert row["url"] == "https://x.test/é \"q\"\n\x00/ü.jpg" and row["exif"] == '{"Make":"Ni\\"kon"}'
    assert row["filename"] == "bad?name"
    assert row["iso"] is None and row["taken_at"] is None and math.isnan(row["f_number"])
    assert row["focal_length"] == 35.5 and row["gps_latitude"] == -33.5
    assert row["width"] == 0 and row["phash"] == ""  # columns left out take their defaults


def test_json_rows_refuses_what_it_cannot_store() -> None:
    with pytest.raises(TypeError, match="cannot store a bytes"):
        json_rows([{"data": b"raw"}])


async def test_chdb_migrate_and_roundtrip(tmp_path: Path) -> None:
    db = Database(f"chdb://{tmp_path / 'ch'}")
    try:
        await roundtrip(db)
    finally:
        db.close()


def test_second_process_on_same_chdb_directory_gets_a_readable_error(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'ch'}"
    db = Database(url)
    try:
        code = ("from imgkit.db import Database\n"
                "from imgkit.errors import ConfigError\n"
                f"try:\n    Database({url!r})\nexcept ConfigError as e:\n    print(e.message)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert "in use by another process" in out.stdout, out.stdout + out.stderr
    finally:
        db.close()


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Database("ftp://nope")


@pytest.mark.clickhouse_server
async def test_server_migrate_and_roundtrip(clickhouse_server_url: str) -> None:
    db = Database(clickhouse_server_url)
    try:
        await db.command("DROP TABLE IF EXISTS schema_migrations")
        for table in ("accounts", "api_keys", "images", "stage_events", "webhook_attempts"):
            await db.command(f"DROP TABLE IF EXISTS {table}")
        await roundtrip(db)
    finally:
        db.close()


async def _batch_db(tmp_path: Path) -> Database:
    db = Database(f"chdb://{tmp_path}/ch")
    await db.command("CREATE TABLE t (n UInt32) ENGINE = MergeTree ORDER BY n")
    return db


async def test_batch_writer_puts_concurrent_rows_in_one_insert(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    db = await _batch_db(tmp_path)
    inserts: list[int] = []
    real = db.insert

    async def counting(table: str, rows: Any) -> None:
        inserts.append(len(rows))
        await real(table, rows)

    monkeypatch.setattr(db, "insert", counting)
    try:
        writer = db.writer("t", linger=0.02)
        await asyncio.gather(*(writer.write({"n": i}) for i in range(50)))
        assert inserts == [50]
        assert (await db.query_one("SELECT count() AS c FROM t"))["c"] == 50  # type: ignore[index]
    finally:
        db.close()


def insert_times(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The list that receives the start time of each of `db`'s inserts from now on."""
    started: list[float] = []
    real = db.insert

    async def timed(table: str, rows: Any) -> None:
        started.append(time.monotonic())
        await real(table, rows)

    monkeypatch.setattr(db, "insert", timed)
    return started


async def test_batch_writer_spacing_batches_a_steady_flow_but_not_a_lone_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = await _batch_db(tmp_path)
    started = insert_times(db, monkeypatch)
    try:
        writer = db.writer("t", spacing=0.3)
        t0 = time.monotonic()
        await writer.write({"n": 0})                       # quiet: written at once
        assert started[0] - t0 < 0.2                       # (spacing would make it 0.3)

        async def steady(i: int) -> None:                  # a row every 20 ms for 0.6 s
            await asyncio.sleep(i * 0.02)
            await writer.write({"n": i})

        await asyncio.gather(*(steady(i) for i in range(1, 31)))
        gaps = [b - a for a, b in itertools.pairwise(started)]
        assert len(started) <= 4 and all(gap >= 0.29 for gap in gaps), gaps
        assert (await db.query_one("SELECT count() AS c FROM t"))["c"] == 31  # type: ignore[index]
    finally:
        db.close()


async def test_batch_writer_quiet_ends_the_spacing_once_rows_stop_coming(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = await _batch_db(tmp_path)
    started = insert_times(db, monkeypatch)
    try:
        writer = db.writer("t", spacing=1.0, quiet=0.15)
        await writer.write({"n": 0})                       # quiet before: at once
        arrived: list[float] = []

        async def steady(i: int) -> None:                  # a row every 20 ms for 0.6 s
            await asyncio.sleep(i * 0.02)
            arrived.append(time.monotonic())
            await writer.write({"n": i})

        await asyncio.gather(*(steady(i) for i in range(1, 31)))
        # rows kept coming closer than `quiet`, so the batch waited for all of them; then it
        # went `quiet` after the last one, not when the 1 s spacing ended
        assert len(started) == 2, started
        assert started[1] > max(arrived)
        assert 0.14 <= started[1] - max(arrived) < 0.3
        assert started[1] - started[0] < 0.9
        assert (await db.query_one("SELECT count() AS c FROM t"))["c"] == 31  # type: ignore[index]
    finally:
        db.close()


async def test_batch_writer_reports_a_failed_insert_to_every_caller(tmp_path: Path) -> None:
    db = Database(f"chdb://{tmp_path}/ch")
    try:
        writer = db.writer("missing_table", linger=0.01)
        results = await asyncio.gather(*(writer.write({"n": i}) for i in range(3)),
                                       return_exceptions=True)
        assert len(results) == 3 and all(isinstance(r, Exception) for r in results)
    finally:
        db.close()
