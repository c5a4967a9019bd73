"""The standalone index shard's input: `<prefix>.images.hashes` read with aiokafka directly.

No consumer group: a shard is *assigned* its partitions (`--partitions 0,1`, or
`--shard i --shards n` = the partitions p with p % n == i) and owns its offsets, which
live in its snapshot rather than in Kafka. That is what makes a restart exact: the
snapshot holds the index contents and, in the same file, the last offset applied per
partition; the shard loads it and seeks each partition to offset + 1, so every record
after the snapshot is applied once and none before it twice.

With no usable snapshot (first start, a different partition set, offsets the broker no
longer retains) the shard rebuilds from ClickHouse. The replay start is taken *before*
the scan, and a margin earlier still: the `store` agent writes an image a moment after
its hashes are published, so a scan could miss an image whose hashes are just before the
"now" offset. Replaying a little too much is harmless (adds and deletes are idempotent
and applied in partition order, i.e. per image in order); replaying too little is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2
from pydantic import ValidationError

from imgkit.db import Database
from imgkit.errors import ConfigError
from imgkit.settings import Settings
from index.service import IndexService
from index.snapshot import SnapshotError
from schemas.events import ImageHashes
from schemas.migrate import migrate

log = logging.getLogger("imgkit.index")

HASHES_TOPIC = "images.hashes"


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (Faust's and aiokafka's) gives `key`."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def parse_partitions(text: str) -> list[int]:
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ConfigError(f"--partitions takes comma-separated partition numbers, got {text!r}") from None
    if not values or values[0] < 0:
        raise ConfigError(f"--partitions takes non-negative partition numbers, got {text!r}")
    return values


def select_partitions(count: int, partitions: list[int] | None = None, shard: int | None = None,
                      shards: int | None = None) -> list[int]:
    """This shard's partitions of a topic with `count` partitions."""
    if partitions is not None and (shard is not None or shards is not None):
        raise ConfigError("give either --partitions or --shard/--shards, not both")
    if partitions is not None:
        missing = [p for p in partitions if p >= count]
        if missing:
            raise ConfigError(f"the topic has {count} partitions; no partition {missing}")
        return partitions
    if shard is None and shards is None:
        return list(range(count))
    if shard is None or shards is None or shards < 1 or not 0 <= shard < shards:
        raise ConfigError("--shard i --shards n needs 0 <= i < n")
    return [p for p in range(count) if p % shards == shard]


@dataclass
class FeedOptions:
    partitions: list[int] | None = None
    shard: int | None = None
    shards: int | None = None
    snapshot_path: Path | None = None  # default: <data_dir>/index/<topic>-<partitions>.npz
    snapshot_interval: float = 60.0
    rebuild_margin: float = 300.0  # seconds of the log replayed before a ClickHouse scan
    poll_records: int = 5000


@dataclass
class FeedStatus:
    state: str = "starting"  # starting -> loading -> ready (or failed)
    source: str = ""  # snapshot | clickhouse
    loaded_seconds: float = 0.0
    snapshots: int = 0
    last_snapshot_at: float | None = None
    skipped: int = 0  # undecodable records
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class IndexFeed:
    """Loads the shard (snapshot or ClickHouse), then applies the hashes topic for ever."""

    def __init__(self, settings: Settings, service: IndexService, options: FeedOptions | None = None) -> None:
        self.settings = settings
        self.service = service
        self.options = options or FeedOptions()
        self.topic = settings.topic(HASHES_TOPIC)
        self.partitions: list[int] = []
        self.partition_count = 0
        #: last offset applied per partition (-1: none); what the snapshot stores
        self.offsets: dict[int, int] = {}
        self.status = FeedStatus()
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._saved_offsets: dict[int, int] | None = None

    # --- naming -----------------------------------------------------------------------------

    @property
    def shard_label(self) -> str:
        o = self.options
        if o.shard is not None and o.shards is not None:
            return f"{o.shard}/{o.shards}"
        return ",".join(map(str, self.partitions))

    @property
    def snapshot_path(self) -> Path:
        if self.options.snapshot_path is not None:
            return self.options.snapshot_path
        parts = "-".join(map(str, self.partitions)) or "all"
        return self.settings.data_dir / "index" / f"{self.topic}.p{parts}.npz"

    def metadata(self) -> dict[str, Any]:
        return {"topic": self.topic, "partitions": self.partitions, "shard": self.shard_label,
                "partition_count": self.partition_count,
                "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
                "engine": self.service.engine, "saved_at": time.time()}

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, choose partitions, load, seek; then consume in the background."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest", client_id=f"imgkit-index-{self.topic}")
        await self._consumer.start()
        try:
            self.partition_count = await self._ensure_topic()
            self.partitions = select_partitions(self.partition_count, self.options.partitions,
                                                self.options.shard, self.options.shards)
            tps = [TopicPartition(self.topic, p) for p in self.partitions]
            self._consumer.assign(tps)
            self.status.state = "loading"
            started = time.perf_counter()
            await self._load(tps)
            self.status.loaded_seconds = round(time.perf_counter() - started, 3)
            for tp in tps:
                self._consumer.seek(tp, self.offsets[tp.partition] + 1)
        except BaseException as exc:
            self.status.state, self.status.error = "failed", str(exc)
            await self._consumer.stop()
            self._consumer = None
            raise
        self.status.state = "ready"
        log.info("index shard ready", extra={
            "topic": self.topic, "partitions": self.partitions, "source": self.status.source,
            "images": self.service.counts(), "seconds": self.status.loaded_seconds})
        self._tasks = [asyncio.create_task(self._consume(), name="index-consume"),
                       asyncio.create_task(self._snapshot_every(), name="index-snapshots")]

    async def stop(self) -> None:
        """Stop consuming, wait for rebuilds, write a final snapshot, disconnect."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        try:
            if self.status.state == "ready":
                await self.service.wait_folds()
                await self.snapshot()
        finally:
            if self._consumer is not None:
                await self._consumer.stop()
                self._consumer = None
            self.status.state = "stopped" if self.status.state == "ready" else self.status.state

    async def snapshot(self) -> None:
        """Write the contents and the offsets they reflect (captured at the same instant)."""
        metadata = self.metadata()
        offsets = dict(self.offsets)
        await self.service.save_snapshot(self.snapshot_path, metadata)
        self._saved_offsets = offsets
        self.status.snapshots += 1
        self.status.last_snapshot_at = time.time()

    # --- loading ----------------------------------------------------------------------------

    async def _ensure_topic(self) -> int:
        """The topic's partition count, creating the topic (with the deployment's count) if new,
        so that a shard started before the workers does not let the broker auto-create it."""
        assert self._consumer is not None
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(self.topic, self.settings.topic_partitions, 1)])
            deadline = time.monotonic() + 30
            while True:
                [described] = await admin.describe_topics([self.topic])
                if described.get("error_code") == 0 and described.get("partitions"):
                    return len(described["partitions"])
                if time.monotonic() > deadline:
                    raise ConfigError(f"the topic {self.topic} has no partitions after 30 s",
                                      error_code=described.get("error_code"))
                await asyncio.sleep(0.2)
        finally:
            await admin.close()

    async def _load(self, tps: list[TopicPartition]) -> None:
        if await self._load_snapshot(tps):
            self.status.source = "snapshot"
            return
        await self._rebuild(tps)
        self.status.source = "clickhouse"

    async def _load_snapshot(self, tps: list[TopicPartition]) -> bool:
        assert self._consumer is not None
        path = self.snapshot_path
        try:
            metadata = await self.service.load_snapshot(path)
        except FileNotFoundError:
            return False
        except SnapshotError as exc:
            log.warning("unreadable index snapshot; rebuilding", extra={"path": str(path), "error": str(exc)})
            return False
        if metadata.get("topic") != self.topic or metadata.get("partitions") != self.partitions:
            log.warning("the index snapshot is of other partitions; rebuilding", extra={
                "path": str(path), "snapshot_partitions": metadata.get("partitions")})
            return False
        offsets = {int(p): int(o) for p, o in metadata.get("offsets", {}).items()}
        first = await self._consumer.beginning_offsets(tps)
        last = await self._consumer.end_offsets(tps)
        for tp in tps:
            applied = offsets.get(tp.partition, -1)
            if applied + 1 < first[tp] or applied + 1 > last[tp]:
                # records after the snapshot are gone (retention) or the topic was recreated
                log.warning("the index snapshot's offsets are outside the log; rebuilding", extra={
                    "partition": tp.partition, "offset": applied, "log_start": first[tp],
                    "log_end": last[tp]})
                return False
        self.offsets = {tp.partition: offsets.get(tp.partition, -1) for tp in tps}
        self._saved_offsets = dict(self.offsets)
        return True

    async def _rebuild(self, tps: list[TopicPartition]) -> None:
        """Rebuild from ClickHouse; the replay start is fixed before the scan (see the module doc)."""
        assert self._consumer is not None
        since_ms = int((time.time() - self.options.rebuild_margin) * 1000)
        by_time = await self._consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = await self._consumer.end_offsets(tps)
        start = {tp.partition: (found.offset if found is not None else ends[tp])
                 for tp, found in by_time.items()}
        mine = set(self.partitions)
        keep: Callable[[str], bool] | None = None
        if len(mine) < self.partition_count:
            count = self.partition_count

            def keep(image_id: str) -> bool:
                return partition_of(image_id, count) in mine

        db = Database(self.settings.clickhouse_url)
        try:
            await migrate(db)
            await self.service.load_from_database(db, keep)
        finally:
            # an embedded (chDB) directory admits one process: release it at once
            db.close()
        self.offsets = {p: start[p] - 1 for p in self.partitions}

    # --- running ----------------------------------------------------------------------------

    async def _consume(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=self.options.poll_records)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the hashes topic failed; retrying")
                await asyncio.sleep(1.0)
                continue
            for tp, messages in batches.items():
                records = []
                for message in messages:
                    try:
                        records.append(ImageHashes.from_bytes(message.value or b""))
                    except ValidationError:
                        self.status.skipped += 1
                        log.warning("skipping an undecodable record", extra={
                            "partition": tp.partition, "offset": message.offset})
                # applied and recorded with no await in between: a snapshot sees both or neither
                self.service.apply_many(records)
                if messages:
                    self.offsets[tp.partition] = messages[-1].offset

    async def _snapshot_every(self) -> None:
        while True:
            await asyncio.sleep(self.options.snapshot_interval)
            if self.offsets != self._saved_offsets:
                try:
                    await self.snapshot()
                except Exception:
                    log.exception("index snapshot failed; will retry")

    def lag(self) -> dict[str, int]:
        """Records not applied yet per partition, from the consumer's last fetch metadata."""
        if self._consumer is None:
            return {}
        result = {}
        for p in self.partitions:
            tp = TopicPartition(self.topic, p)
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                result[str(p)] = max(0, highwater - self.offsets.get(p, -1) - 1)
        return result
