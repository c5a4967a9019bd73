"""Versioned ClickHouse migrations: `schemas/migrations/NNNN_name.sql`, applied in order once.

Each file holds statements separated by `;` lines. Applied versions are recorded
in `schema_migrations`, so `imgkit migrate` and every service start are cheap
and safe to repeat. Statements use `IF NOT EXISTS` so a migration interrupted
half-way can simply run again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from imgkit.db import Database

log = logging.getLogger("imgkit.migrate")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name must be NNNN_name.sql: {path.name}")
        text = "\n".join(line for line in path.read_text().splitlines()
                         if not line.strip().startswith("--"))
        statements = tuple(s.strip() for s in text.split(";") if s.strip())
        found.append(Migration(int(match.group(1)), match.group(2), statements))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {directory}")
    return found


async def applied_versions(db: Database) -> set[int]:
    await db.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version")
    rows = await db.query("SELECT version FROM schema_migrations")
    return {int(r["version"]) for r in rows}


async def migrate(db: Database, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every migration not applied yet; return the ones applied now."""
    done = await applied_versions(db)
    applied = []
    for migration in load_migrations(directory):
        if migration.version in done:
            continue
        for statement in migration.statements:
            await db.command(statement)
        await db.command("INSERT INTO schema_migrations (version, name) VALUES "
                         "({v:UInt32}, {n:String})", {"v": migration.version, "n": migration.name})
        log.info("migration applied", extra={"version": migration.version, "migration": migration.name})
        applied.append(migration)
    return applied
