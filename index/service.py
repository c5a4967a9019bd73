"""The near-duplicate index as a service object: apply `ImageHashes`, answer queries, persist.

One `IndexService` holds every (account, kind) index of a process. It is used in two
places with the same code: in-process by `imgkit dev` (the `index` agent calls `apply`,
the API calls `similar`), and by the standalone `imgkit index` shard (`index.feed` calls
`apply_many` with Kafka records, `index.http` serves `similar`). All calls happen on one
event loop; only engine rebuilds (`LiveIndex` folds) and snapshot writes go to a worker
thread, on immutable data, so queries keep being answered while they run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from imgkit.db import Database
from imgkit.errors import BadRequest
from index.engine import HashIndex, IdsLike, Match, as_id_bytes
from index.live import LiveIndex, distance
from index.registry import IndexSet, Key
from index.snapshot import load_index_set, save_index_set
from schemas.events import ImageHashes

log = logging.getLogger("imgkit.index")

KINDS = ("phash", "dhash")
#: A fold of an index this small takes milliseconds: done inline, no thread hop.
INLINE_FOLD_MAX = 100_000
#: Rows fetched per page when rebuilding from ClickHouse (bounded memory per query).
REBUILD_PAGE = 200_000


def parse_hash(value: str, what: str = "hash") -> int:
    """16 hex digits (what `imagehash` prints and the API stores) as an unsigned int."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if len(text) != 16 or any(c not in "0123456789abcdef" for c in text):
        raise BadRequest(f"{what} must be 16 hexadecimal digits (a 64-bit perceptual hash)",
                         value=value)
    return int(text, 16)


def format_hash(value: int) -> str:
    return f"{value:016x}"


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}", kind=kind)
    return kind


@dataclass(frozen=True)
class CrossCheck:
    """Keep a pHash match only if its dHash is also within `max_distance` of `dhash`.

    pHash (DCT of the low frequencies) and dHash (horizontal gradients) fail differently:
    unrelated images that collide on one rarely collide on the other, so requiring both
    trades a few near-duplicates for far fewer false positives at a generous pHash radius.
    """

    dhash: int
    max_distance: int


class LiveIndexSet(IndexSet):
    """An `IndexSet` of `LiveIndex`es (engines that rebuild off the query path)."""

    def get(self, account_id: str, kind: str) -> LiveIndex:
        key = (account_id, kind)
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = LiveIndex(self.engine, **self._options)
        return cast(LiveIndex, index)

    def peek_live(self, account_id: str, kind: str) -> LiveIndex | None:
        return cast(LiveIndex | None, self._indexes.get((account_id, kind)))


class _Captured(HashIndex):
    """Arrays captured for a snapshot; only `items()` is ever called (by `save_index_set`)."""

    name = "captured"

    def __init__(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        self._ids, self._hashes = ids, hashes

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        return self._ids, self._hashes

    def __len__(self) -> int:
        return len(self._ids)

    def _unsupported(self) -> Any:
        raise NotImplementedError("a captured snapshot only gives its items")

    def add(self, id: str, hash: int) -> None:
        self._unsupported()

    def add_many(self, ids: IdsLike, hashes: np.ndarray) -> None:
        self._unsupported()

    def remove(self, id: str) -> bool:
        return cast(bool, self._unsupported())

    def get(self, id: str) -> int | None:
        return cast(int | None, self._unsupported())

    def within(self, hash: int, max_distance: int) -> list[Match]:
        return cast(list[Match], self._unsupported())

    def nearest(self, hash: int, k: int) -> list[Match]:
        return cast(list[Match], self._unsupported())

    def memory_bytes(self) -> int:
        return int(self._ids.nbytes + self._hashes.nbytes)


class _CapturedSet(IndexSet):
    def __init__(self, captured: list[tuple[Key, HashIndex]]) -> None:
        super().__init__("brute")
        self._captured = captured

    def items(self) -> Iterator[tuple[Key, HashIndex]]:
        return iter(self._captured)


class IndexService:
    """Every (account, kind) index of this process, fed by `ImageHashes` records."""

    def __init__(self, engine: str = "mih", **options: Any) -> None:
        self.engine = engine
        self._options = options
        self.indexes = LiveIndexSet(engine, **options)
        self.applied = 0  # records applied since start (health, tests)
        self.folds = 0
        self._fold_tasks: dict[Key, asyncio.Task[None]] = {}
        # one background rebuild at a time: they are CPU-bound and a node has few cores
        self._fold_gate = asyncio.Semaphore(1)

    # --- writes ---------------------------------------------------------------------------------

    async def apply(self, record: ImageHashes) -> None:
        """`HashSink` for the in-process `index` agent."""
        self.apply_many([record])

    def apply_many(self, records: Iterable[ImageHashes]) -> None:
        """Apply records in order: both kinds added, or (`deleted`) removed from both.

        Synchronous and cheap (writes go to the small top layers); indexes whose top layer
        is full are folded inline when small, else in a worker thread."""
        touched: set[Key] = set()
        for record in records:
            self.applied += 1
            if record.deleted:
                for kind in KINDS:
                    index = self.indexes.peek_live(record.account_id, kind)
                    if index is not None:
                        index.remove(record.image_id)
                        touched.add((record.account_id, kind))
                continue
            for kind in KINDS:
                value = getattr(record, kind)
                if not value:
                    continue
                try:
                    hash = parse_hash(value, kind)
                except BadRequest:
                    log.warning("ignoring a malformed hash", extra={"image_id": record.image_id,
                                                                    "kind": kind})
                    continue
                self.indexes.get(record.account_id, kind).add(record.image_id, hash)
                touched.add((record.account_id, kind))
        for key in touched:
            self._maybe_fold(key)

    def _maybe_fold(self, key: Key) -> None:
        index = self.indexes.peek_live(*key)
        if index is None or not index.needs_fold() or key in self._fold_tasks:
            return
        if index.base_size <= INLINE_FOLD_MAX:
            index.fold()
            self.folds += 1
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (scripts, sync tests): fold inline
            index.fold()
            self.folds += 1
            return
        task = loop.create_task(self._fold_in_thread(key, index))
        self._fold_tasks[key] = task

    async def _fold_in_thread(self, key: Key, index: LiveIndex) -> None:
        try:
            async with self._fold_gate:
                started = time.perf_counter()
                build = index.begin_fold()
                try:
                    new_base = await asyncio.to_thread(build)
                except BaseException:
                    index.abort_fold()
                    raise
                index.end_fold(new_base)
                self.folds += 1
                log.info("index rebuilt in the background", extra={
                    "account_id": key[0], "kind": key[1], "size": len(index),
                    "seconds": round(time.perf_counter() - started, 3)})
        except Exception:
            log.exception("index rebuild failed; writes stay in the top layer")
        finally:
            self._fold_tasks.pop(key, None)
        self._maybe_fold(key)  # writes may have piled up meanwhile

    async def wait_folds(self) -> None:
        """Wait for background rebuilds (shutdown, tests)."""
        while self._fold_tasks:
            await asyncio.gather(*self._fold_tasks.values(), return_exceptions=True)

    def clear(self) -> None:
        self.indexes = LiveIndexSet(self.engine, **self._options)
        self.applied = 0

    # --- reads ----------------------------------------------------------------------------------

    def similar(self, account_id: str, kind: str, hash: int, max_distance: int, limit: int,
                cross_check: CrossCheck | None = None) -> list[Match]:
        """The first `limit` ids within `max_distance`, by (distance, id).

        The same answer whatever the engine or shard layout, so that the API can merge the
        answers of several shards into exactly what one index would say."""
        check_kind(kind)
        if cross_check is not None and kind != "phash":
            raise BadRequest("the dHash cross-check applies to pHash queries (kind=phash)")
        index = self.indexes.peek_live(account_id, kind)
        if index is None or limit <= 0:
            return []
        if cross_check is None:
            if max_distance > 12:  # wide radius: many matches; nearest stops at `limit`
                return [m for m in index.nearest(hash, limit) if m.distance <= max_distance]
            return index.within(hash, max_distance)[:limit]
        dhashes = self.indexes.peek_live(account_id, "dhash")
        kept: list[Match] = []
        for match in index.within(hash, max_distance):
            other = dhashes.get(match.id) if dhashes is not None else None
            if other is not None and distance(other, cross_check.dhash) <= cross_check.max_distance:
                kept.append(match)
                if len(kept) >= limit:
                    break
        return kept

    def get(self, account_id: str, kind: str, image_id: str) -> int | None:
        index = self.indexes.peek_live(account_id, kind)
        return None if index is None else index.get(image_id)

    def counts(self) -> dict[str, int]:
        """Images per kind over all accounts."""
        totals = dict.fromkeys(KINDS, 0)
        for (_, kind), index in self.indexes.items():
            totals[kind] = totals.get(kind, 0) + len(index)
        return totals

    # --- rebuild from ClickHouse ------------------------------------------------------------------

    async def load_from_database(self, db: Database, keep: Callable[[str], bool] | None = None,
                                 page: int = REBUILD_PAGE) -> int:
        """Replace the contents with every completed image in storage; return the row count.

        `keep(image_id)` filters rows (a shard keeps the images of its partitions). Pages by
        the table's sort key so memory stays bounded, and bulk-builds each index once."""
        started = time.perf_counter()
        columns: dict[Key, tuple[list[str], list[int]]] = {}
        after: tuple[str, str] = ("", "")
        total = 0
        while True:
            rows = await db.query(
                "SELECT account_id, id, phash, dhash FROM images FINAL WHERE status = 'completed' "
                "AND (account_id, id) > ({a:String}, {i:String}) ORDER BY account_id, id "
                "LIMIT {n:UInt32}", {"a": after[0], "i": after[1], "n": page})
            for row in rows:
                if keep is not None and not keep(row["id"]):
                    continue
                total += 1
                for kind in KINDS:
                    value = row[kind]
                    if value and len(value) == 16:
                        ids, hashes = columns.setdefault((row["account_id"], kind), ([], []))
                        ids.append(row["id"])
                        hashes.append(int(value, 16))
            if len(rows) < page:
                break
            after = (rows[-1]["account_id"], rows[-1]["id"])
        fresh = LiveIndexSet(self.engine, **self._options)
        for (account_id, kind), (ids, hashes) in columns.items():
            id_array, hash_array = as_id_bytes(ids), np.array(hashes, dtype=np.uint64)
            await asyncio.to_thread(fresh.get(account_id, kind).add_many, id_array, hash_array)
        self.indexes = fresh  # swapped whole: queries never see a half-built set
        self.applied = 0
        log.info("index rebuilt from storage", extra={
            "images": total, "indexes": len(self.indexes),
            "seconds": round(time.perf_counter() - started, 3)})
        return total

    # --- snapshots --------------------------------------------------------------------------------

    async def save_snapshot(self, path: Path, metadata: dict[str, Any]) -> None:
        """Write every index and `metadata` (the offsets they reflect), atomically.

        The contents are captured on the loop at this instant (so they match `metadata`),
        the arrays are assembled and written in a worker thread."""
        views = [(key, index.snapshot_view()) for key, index in self.indexes.items()
                 if isinstance(index, LiveIndex)]

        def write() -> None:
            captured: list[tuple[Key, HashIndex]] = []
            for key, view in views:
                ids, hashes = view()
                if len(ids):
                    captured.append((key, _Captured(ids, hashes)))
            save_index_set(path, _CapturedSet(captured), metadata)

        await asyncio.to_thread(write)

    async def load_snapshot(self, path: Path) -> dict[str, Any]:
        """Replace the contents with a snapshot; return its metadata (FileNotFoundError if none)."""
        fresh = LiveIndexSet(self.engine, **self._options)
        metadata = await asyncio.to_thread(load_index_set, path, fresh)
        self.indexes = fresh
        self.applied = 0
        return metadata


def merge_matches(answers: Sequence[Sequence[Match]], limit: int) -> list[Match]:
    """Merge per-shard answers (each sorted by (distance, id)) into the first `limit` overall.

    Shards hold disjoint ids, so this is exactly the answer of one index over everything."""
    merged = sorted((m for answer in answers for m in answer), key=lambda m: (m.distance, m.id))
    return merged[:limit]
