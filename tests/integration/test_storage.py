"""Migrations and a round-trip through clickhouse-connect, on chDB and on a ClickHouse server."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imgkit.db import Database
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
