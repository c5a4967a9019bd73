"""Small-batch inserts into embedded ClickHouse: JSONEachRow inline (ImgKit's) vs Arrow.

    .venv/bin/python -m tests.bench.bench_storage [--batches 60] [--rows 1,10,100]

ImgKit's writes are batches of a few to a few hundred rows (BatchWriter), so
what matters is the fixed cost of one INSERT. Both ways go through the same
clickhouse-connect client on chDB, into the real `images` table (migrations
applied), with rows shaped as the pipeline writes them (a 2 KB EXIF JSON):

- json: `Database.insert`, one command with the rows inline as JSONEachRow;
- arrow: `client.insert_arrow` of a `pyarrow.Table.from_pylist` of the same rows,
  which the chDB backend writes to a temporary file and inserts FROM INFILE.

CPU is the process's (getrusage: chDB's threads included) per INSERT, the
median of `--repeat` alternated rounds. The data directory sits under --dir
(default: the system temp dir); on a tmpfs the file-system share vanishes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from agents.store import _base_row
from imgkit.db import Database, Row
from schemas.migrate import migrate


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def image_rows(count: int, batch: int) -> list[Row]:
    now = datetime.now(UTC)
    exif = json.dumps({f"Tag{i}": f"value {i} " * 4 for i in range(50)})
    rows = []
    for i in range(count):
        row = _base_row(f"img_{batch:06d}_{i:04d}", "acc_bench", 1)
        row.update(created_at=now, updated_at=now, status="completed", url=f"https://example.com/{i}.jpg",
                   checksum="ab" * 32, byte_size=2_500_000, width=4000, height=3000, phash="0" * 16,
                   dhash="f" * 16, exif=exif, camera_make="Canon", iso=100, f_number=8.0)
        rows.append(row)
    return rows


async def measure(db: Database, way: str, rows_per_insert: int, batches: int, offset: int) -> float:
    """CPU-milliseconds per INSERT."""
    client: Any = db._client  # the arrow way calls the client as the old Database.insert did
    before = cpu_seconds()
    for b in range(batches):
        rows = image_rows(rows_per_insert, offset + b)
        if way == "json":
            await db.insert("images", rows)
        else:
            await db._call(client.insert_arrow, "images", pa.Table.from_pylist(rows))
    return (cpu_seconds() - before) / batches * 1000


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        db = Database(f"chdb://{Path(scratch) / 'clickhouse'}")
        try:
            await migrate(db)
            await measure(db, "json", 1, 5, 0)  # warm the engine and both code paths
            await measure(db, "arrow", 1, 5, 100)
            print(f"\nchDB, table `images`, {args.batches} INSERTs per cell, median of {args.repeat} "
                  f"alternated rounds, data under {scratch}\n")
            print("| rows per INSERT | JSONEachRow CPU ms/INSERT | Arrow CPU ms/INSERT | Arrow / JSON |")
            print("|---:|---:|---:|---:|")
            offset = 1000
            for rows in args.rows:
                results: dict[str, list[float]] = {"json": [], "arrow": []}
                for _ in range(args.repeat):
                    for way in ("json", "arrow"):
                        results[way].append(await measure(db, way, rows, args.batches, offset))
                        offset += args.batches
                json_ms, arrow_ms = (statistics.median(results[w]) for w in ("json", "arrow"))
                print(f"| {rows} | {json_ms:.1f} | {arrow_ms:.1f} | {arrow_ms / json_ms:.2f}x |")
        finally:
            db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rows", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 100])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="parent of the scratch data directory")
    args = parser.parse_args()
    started = time.perf_counter()
    asyncio.run(run(args))
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
