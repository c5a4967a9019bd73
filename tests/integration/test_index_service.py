"""The standalone index shard (`imgkit index`) on the real Kafka broker.

Each test has its own topic prefix. Records are produced with aiokafka exactly as the
pipeline's Faust producer sends them (key = image id, JSON value, default partitioner),
and every answer is compared with the brute-force oracle over the expected contents.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.store import _base_row
from imgkit.db import Database
from imgkit.settings import Settings, load_settings
from index.brute import BruteForceIndex
from index.client import ShardedIndex
from index.engine import Match
from index.feed import FeedOptions, partition_of
from index.http import create_index_app
from index.service import format_hash
from schemas.events import ImageHashes
from schemas.migrate import migrate
from tests.support.app_server import free_port

pytestmark = pytest.mark.kafka

PARTITIONS = 4


class IndexServer:
    """One shard on a real uvicorn in a thread; `stop()` runs its shutdown (final snapshot)."""

    def __init__(self, settings: Settings, options: FeedOptions) -> None:
        self.port = settings.index_port
        self.app = create_index_app(settings, options)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_config=None, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> IndexServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive(), "the index shard died while starting"
            assert time.monotonic() < deadline, "the index shard did not start in 60 s"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/healthz", timeout=10).json()

    def wait_applied(self, last: dict[int, int], timeout: float = 30) -> dict[str, Any]:
        """Until every offset in `last` (of this shard's partitions) is applied."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            applied = {int(p): o for p, o in health["applied_offsets"].items()}
            if all(applied.get(p, -1) >= o for p, o in last.items() if p in health["partitions"]):
                return health
            assert time.monotonic() < deadline, f"not caught up: {applied} < {last}"
            time.sleep(0.1)

    def similar(self, account: str, hash: int, max_distance: int, limit: int = 1000,
                kind: str = "phash") -> list[Match]:
        response = httpx.get(f"{self.url}/similar", params={
            "account": account, "hash": format_hash(hash), "kind": kind,
            "max_distance": max_distance, "limit": limit}, timeout=10)
        assert response.status_code == 200, response.text
        return [Match(m["id"], m["distance"]) for m in response.json()["matches"]]


def make_settings(tmp_path: Path, kafka: str, prefix: str, **extra: Any) -> Settings:
    return load_settings(data_dir=tmp_path / "data", kafka_bootstrap=kafka, topic_prefix=prefix,
                         topic_partitions=PARTITIONS, index_port=free_port(), log_format="console",
                         clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}", **extra)


async def _ensure_topic(kafka: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    except Exception as exc:  # already there
        if "TopicAlreadyExists" not in type(exc).__name__:
            raise
    finally:
        await admin.close()


def produce(kafka: str, topic: str, records: list[ImageHashes]) -> dict[int, int]:
    """Send in order (keyed by image id, as the pipeline does); the last offset per partition."""

    async def run() -> dict[int, int]:
        await _ensure_topic(kafka, topic)
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
        await producer.start()
        last: dict[int, int] = {}
        try:
            for record in records:
                meta = await producer.send_and_wait(topic, record.to_bytes(), key=record.key.encode())
                last[meta.partition] = meta.offset
        finally:
            await producer.stop()
        return last

    return asyncio.run(run())


class Model:
    """The expected contents: what one index over every record must hold."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, str], tuple[int, int]] = {}  # (account, id) -> (phash, dhash)

    def apply(self, records: list[ImageHashes]) -> None:
        for r in records:
            if r.deleted:
                self.state.pop((r.account_id, r.image_id), None)
            else:
                self.state[(r.account_id, r.image_id)] = (int(r.phash or "0", 16), int(r.dhash or "0", 16))

    def oracle(self, account: str, kind: str = "phash",
               keep: Any = None) -> BruteForceIndex:
        index = BruteForceIndex()
        for (acc, image_id), hashes in self.state.items():
            if acc == account and (keep is None or keep(image_id)):
                index.add(image_id, hashes[0] if kind == "phash" else hashes[1])
        return index


class Generator:
    """Clustered random hashes (so radius queries find several), over two accounts."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.centres = [self.rng.getrandbits(64) for _ in range(6)]
        self.count = 0

    def near(self) -> int:
        value = self.rng.choice(self.centres)
        for _ in range(self.rng.randrange(7)):
            value ^= 1 << self.rng.randrange(64)
        return value

    def add(self, account: str = "acc_a", image_id: str | None = None) -> ImageHashes:
        self.count += 1
        return ImageHashes(image_id=image_id or f"img_{self.count:05d}_{uuid.uuid4().hex[:6]}",
                           account_id=account, phash=format_hash(self.near()),
                           dhash=format_hash(self.near()))

    def batch(self, n: int) -> list[ImageHashes]:
        return [self.add(self.rng.choice(["acc_a", "acc_b"])) for _ in range(n)]


def assert_matches_oracle(server: IndexServer | ShardedIndex, model: Model, gen: Generator,
                          accounts: tuple[str, ...] = ("acc_a", "acc_b", "acc_none")) -> None:
    for account in accounts:
        for kind in ("phash", "dhash"):
            oracle = model.oracle(account, kind)
            for centre in gen.centres:
                for radius in (0, 4, 8, 12):
                    expected = oracle.within(centre, radius)[:1000]
                    if isinstance(server, ShardedIndex):
                        got = asyncio.run(_sharded(server, account, kind, centre, radius))
                    else:
                        got = server.similar(account, centre, radius, kind=kind)
                    assert got == expected, (account, kind, radius)


async def _sharded(index: ShardedIndex, account: str, kind: str, hash: int, radius: int) -> list[Match]:
    # a fresh client per event loop (asyncio.run makes a new loop each time)
    async with httpx.AsyncClient(timeout=10) as client:
        return await ShardedIndex(index.urls, client=client).similar(account, kind, hash, radius, 1000)


def test_shard_applies_adds_and_deletes_from_kafka(tmp_path: Path, kafka_bootstrap: str) -> None:
    prefix = f"ix{uuid.uuid4().hex[:8]}"
    settings = make_settings(tmp_path, kafka_bootstrap, prefix)
    topic = settings.topic("images.hashes")
    gen, model = Generator(1), Model()
    server = IndexServer(settings, FeedOptions(snapshot_interval=3600)).start()
    try:
        health = server.health()
        assert health["status"] == "ok" and health["partitions"] == [0, 1, 2, 3]
        assert health["loaded_from"] == "clickhouse"  # no snapshot yet: an (empty) rebuild
        records = gen.batch(300)
        victims = [r for r in records[:40]]
        records += [ImageHashes(image_id=r.image_id, account_id=r.account_id, deleted=True) for r in victims]
        records += [gen.add(victims[0].account_id, victims[0].image_id)]  # re-added after its delete
        model.apply(records)
        health = server.wait_applied(produce(kafka_bootstrap, topic, records))
        assert health["records_applied"] == len(records)
        assert health["counts"]["phash"] == len(model.state) == health["counts"]["dhash"]
        assert_matches_oracle(server, model, gen)
        # a query by an unknown account or a malformed hash
        assert server.similar("nobody", gen.centres[0], 8) == []
        bad = httpx.get(f"{server.url}/similar", params={"account": "acc_a", "hash": "xyz"})
        assert bad.status_code == 422 and "16 hexadecimal" in bad.json()["error"]["message"]
        batch = httpx.post(f"{server.url}/similar/batch", json={
            "account": "acc_a", "hashes": [format_hash(c) for c in gen.centres], "max_distance": 8,
            "limit": 1000}).json()
        assert [[Match(m["id"], m["distance"]) for m in r] for r in batch["results"]] == [
            model.oracle("acc_a").within(c, 8) for c in gen.centres]
    finally:
        server.stop()


def test_snapshot_restart_resumes_from_saved_offsets(tmp_path: Path, kafka_bootstrap: str) -> None:
    prefix = f"ix{uuid.uuid4().hex[:8]}"
    settings = make_settings(tmp_path, kafka_bootstrap, prefix)
    topic = settings.topic("images.hashes")
    gen, model = Generator(2), Model()
    options = FeedOptions(snapshot_interval=3600)

    first = gen.batch(200)
    added_then_removed = gen.add("acc_a")
    first += [added_then_removed,
              ImageHashes(image_id=added_then_removed.image_id, account_id="acc_a", deleted=True)]
    server = IndexServer(settings, options).start()
    try:
        model.apply(first)
        server.wait_applied(produce(kafka_bootstrap, topic, first))
    finally:
        server.stop()  # writes the snapshot with the applied offsets
    snapshot = next((settings.data_dir / "index").glob("*.npz"))
    assert snapshot.name == f"{topic}.p0-1-2-3.npz"

    # while it is down: more adds, deletes of earlier images, a re-add with a new hash
    second = gen.batch(150)
    removed_later = first[:25]
    second += [ImageHashes(image_id=r.image_id, account_id=r.account_id, deleted=True) for r in removed_later]
    second.append(gen.add(first[30].account_id, first[30].image_id))
    last = produce(kafka_bootstrap, topic, second)
    model.apply(second)

    server = IndexServer(settings, options).start()
    try:
        health = server.wait_applied(last)
        assert health["loaded_from"] == "snapshot"
        # exactly the records produced while it was down: nothing replayed twice, none lost
        assert health["records_applied"] == len(second)
        assert health["counts"]["phash"] == len(model.state)
        assert_matches_oracle(server, model, gen)
        probe = server.similar("acc_a", int(added_then_removed.phash or "0", 16), 0)
        assert added_then_removed.image_id not in [m.id for m in probe]
    finally:
        server.stop()


def _completed_row(account: str, image_id: str, phash: str, dhash: str, status: str = "completed",
                   version: int = 1, deleted: int = 0) -> dict[str, Any]:
    now = datetime.now(UTC)
    row = _base_row(image_id, account, version)
    row.update(created_at=now, updated_at=now, status=status, url=f"http://x/{image_id}.jpg",
               phash=phash, dhash=dhash, deleted=deleted)
    return row


def write_rows(url: str, rows: list[dict[str, Any]]) -> None:
    """Write with the one storage client, then close it (chDB: one directory per process)."""

    async def run() -> None:
        db = Database(url)
        try:
            await migrate(db)
            await db.insert("images", rows)
        finally:
            db.close()

    asyncio.run(run())


def seed_storage(settings: Settings, gen: Generator, model: Model, n: int) -> list[ImageHashes]:
    records = gen.batch(n)
    rows = [_completed_row(r.account_id, r.image_id, r.phash or "", r.dhash or "") for r in records]
    # not in the index: a failed image, a pending one, and a deleted one (tombstone row)
    rows.append(_completed_row("acc_a", "img_failed", "", "", status="failed"))
    rows.append(_completed_row("acc_a", "img_pending", "", "", status="pending"))
    gone = records[0]
    rows.append(_completed_row(gone.account_id, gone.image_id, "", "", status="deleted", version=2,
                               deleted=1))
    write_rows(settings.clickhouse_url, rows)
    model.apply(records[1:])
    return records


def test_rebuild_from_clickhouse_when_there_is_no_snapshot(tmp_path: Path, kafka_bootstrap: str) -> None:
    prefix = f"ix{uuid.uuid4().hex[:8]}"
    settings = make_settings(tmp_path, kafka_bootstrap, prefix)
    topic = settings.topic("images.hashes")
    gen, model = Generator(3), Model()
    records = seed_storage(settings, gen, model, 400)
    # already on the topic before the shard starts, within the rebuild margin: replayed over
    # the scan (a delete the scan could not know about yet)
    early = [ImageHashes(image_id=records[5].image_id, account_id=records[5].account_id, deleted=True)]
    produce(kafka_bootstrap, topic, early)
    model.apply(early)

    started = time.perf_counter()
    server = IndexServer(settings, FeedOptions(snapshot_interval=3600)).start()
    try:
        health = server.health()
        assert health["loaded_from"] == "clickhouse"
        print(f"rebuild of {len(records)} rows: {health['load_seconds']} s "
              f"(start {time.perf_counter() - started:.2f} s)")
        later = gen.batch(50)
        model.apply(later)
        health = server.wait_applied(produce(kafka_bootstrap, topic, later))
        assert health["counts"]["phash"] == len(model.state)
        assert_matches_oracle(server, model, gen)
    finally:
        server.stop()
    # the shard released the chDB directory: this process can open it again
    write_rows(settings.clickhouse_url, [])


def test_two_shards_merge_to_the_single_index_answer(tmp_path: Path, kafka_bootstrap: str) -> None:
    prefix = f"ix{uuid.uuid4().hex[:8]}"
    base = make_settings(tmp_path, kafka_bootstrap, prefix)
    topic = base.topic("images.hashes")
    gen, model = Generator(4), Model()
    seed_storage(base, gen, model, 300)
    servers: list[IndexServer] = []
    try:
        for shard in range(2):  # one at a time: each opens the chDB directory for its rebuild
            settings = base.model_copy(update={"index_port": free_port()})
            servers.append(IndexServer(settings, FeedOptions(shard=shard, shards=2,
                                                             snapshot_interval=3600)).start())
        assert [s.health()["partitions"] for s in servers] == [[0, 2], [1, 3]]
        settings = base.model_copy(update={"index_port": free_port()})
        whole = IndexServer(settings, FeedOptions(snapshot_interval=3600)).start()
        servers.append(whole)

        records = gen.batch(300)
        records += [ImageHashes(image_id=r.image_id, account_id=r.account_id, deleted=True)
                    for r in records[:30]]
        model.apply(records)
        last = produce(kafka_bootstrap, topic, records)
        for server in servers:
            server.wait_applied(last)

        # each shard holds exactly the images of its partitions
        for shard, server in enumerate(servers[:2]):
            mine = {0: {0, 2}, 1: {1, 3}}[shard]
            oracle = model.oracle("acc_a", keep=lambda i, m=mine: partition_of(i, PARTITIONS) in m)
            assert server.similar("acc_a", gen.centres[0], 64, limit=1000) == oracle.nearest(
                gen.centres[0], 1000)
        sharded = ShardedIndex([s.url for s in servers[:2]])
        assert_matches_oracle(sharded, model, gen)
        assert_matches_oracle(whole, model, gen)
        for centre in gen.centres:  # the fan-out merge with a limit == the single index
            for limit in (1, 3, 10):
                merged = asyncio.run(_limited(sharded, centre, limit))
                assert merged == whole.similar("acc_a", centre, 12, limit=limit)

        servers[1].stop()
        servers.remove(servers[1])
        from imgkit.errors import ServiceUnavailable

        with pytest.raises(ServiceUnavailable, match="unreachable"):
            asyncio.run(_limited(sharded, gen.centres[0], 5))
    finally:
        for server in servers:
            server.stop()


async def _limited(index: ShardedIndex, hash: int, limit: int) -> list[Match]:
    async with httpx.AsyncClient(timeout=10) as client:
        return await ShardedIndex(index.urls, client=client).similar("acc_a", "phash", hash, 12, limit)
