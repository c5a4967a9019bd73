"""FaustRunner on a real Kafka broker: round trip, batching, dead letters, at-least-once.

The broker comes from the `kafka_bootstrap` fixture of tests/conftest.py
(IMGKIT_TEST_KAFKA; `bash deploy/kafka/kafka.sh start` starts one on 127.0.0.1:9092).
Each test uses its own topic prefix (so its own topics and consumer group), so
reruns against the same broker never see an earlier run's records.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from aiokafka.partitioner import DefaultPartitioner

from imgkit.settings import Settings, load_settings
from streams.delivery import DeadLetter
from streams.faust_runner import FaustRunner
from streams.record import Record
from streams.topology import Agent, Emit, Topic, Topology, each

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

WAIT = 60.0  # seconds for records to come round; generous for a loaded 2-core CI machine


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return load_settings(bus="kafka", kafka_bootstrap=kafka_bootstrap,
                         topic_prefix=f"test-{uuid.uuid4().hex[:10]}", topic_partitions=3)


class Job(Record):
    id: str
    n: int


class Result(Record):
    id: str
    n: int
    doubled: int


async def collect(queue: asyncio.Queue[Record], count: int) -> list[Record]:
    return [await asyncio.wait_for(queue.get(), WAIT) for _ in range(count)]


def sink(queue: asyncio.Queue[Record]) -> object:
    async def handler(records: Sequence[Record]) -> Sequence[Emit]:
        for record in records:
            queue.put_nowait(record)
        return ()
    return handler


async def test_round_trip_keeps_per_key_order(settings: Settings) -> None:
    topo = Topology()
    jobs = topo.topic("jobs", Job)
    results = topo.topic("results", Result)
    out: asyncio.Queue[Record] = asyncio.Queue()

    async def double(job: Job) -> Sequence[Emit]:
        return [Emit(results, Result(id=job.id, n=job.n, doubled=job.n * 2))]

    topo.agent(Agent("double", jobs, each(double, concurrency=4), outputs=(results,)))
    topo.agent(Agent("collect", results, sink(out)))  # type: ignore[arg-type]
    runner = FaustRunner(topo, settings)
    await runner.start()
    try:
        sent = [Job(id=f"k{i % 4}", n=i) for i in range(24)]
        for job in sent:
            await runner.send(jobs, job)
        got = await collect(out, len(sent))
    finally:
        await runner.stop()
    assert all(isinstance(r, Result) and r.doubled == 2 * r.n for r in got)
    assert sorted(r.n for r in got) == list(range(24))  # type: ignore[attr-defined]
    for key in {job.id for job in sent}:
        ns = [r.n for r in got if r.id == key]  # type: ignore[attr-defined]
        assert ns == sorted(ns), f"records of {key} out of order: {ns}"
    assert runner.published["results"] == 24


async def test_batches_fill_up_to_batch_size(settings: Settings) -> None:
    topo = Topology()
    jobs = topo.topic("jobs", Job)
    sizes: list[int] = []
    out: asyncio.Queue[Record] = asyncio.Queue()

    async def store(records: Sequence[Record]) -> Sequence[Emit]:
        sizes.append(len(records))
        for record in records:
            out.put_nowait(record)
        return ()

    topo.agent(Agent("store", jobs, store, batch_size=10, batch_wait=0.5))
    runner = FaustRunner(topo, settings)
    await runner.start()
    try:
        # All on one key: one partition, so the whole burst is available to one batch.
        for i in range(30):
            await runner.send(jobs, Job(id="same", n=i))
        got = await collect(out, 30)
    finally:
        await runner.stop()
    assert [r.n for r in got] == list(range(30))  # type: ignore[attr-defined]
    assert max(sizes) > 1 and max(sizes) <= 10, sizes


async def test_failing_record_goes_to_dead_letter_and_stream_goes_on(settings: Settings) -> None:
    topo = Topology()
    jobs = topo.topic("jobs", Job)
    results = topo.topic("results", Result)
    dead = topo.topic("jobs.dlq", DeadLetter)
    out: asyncio.Queue[Record] = asyncio.Queue()
    letters: asyncio.Queue[Record] = asyncio.Queue()

    async def picky(job: Job) -> Sequence[Emit]:
        if job.n == 3:
            raise RuntimeError("cannot handle three")
        return [Emit(results, Result(id=job.id, n=job.n, doubled=job.n * 2))]

    topo.agent(Agent("picky", jobs, each(picky), outputs=(results,), max_attempts=2))
    topo.agent(Agent("collect", results, sink(out)))  # type: ignore[arg-type]
    topo.agent(Agent("letters", dead, sink(letters)))  # type: ignore[arg-type]
    runner = FaustRunner(topo, settings)
    await runner.start()
    try:
        for i in range(6):
            await runner.send(jobs, Job(id="one-key", n=i))
        got = await collect(out, 5)
        (letter,) = await collect(letters, 1)
    finally:
        await runner.stop()
    assert [r.n for r in got] == [0, 1, 2, 4, 5]  # type: ignore[attr-defined]
    assert isinstance(letter, DeadLetter)
    assert letter.source_topic == "jobs" and letter.agent == "picky" and letter.attempts == 2
    assert "cannot handle three" in letter.error
    assert Job.from_bytes(letter.payload) == Job(id="one-key", n=3)


async def test_undecodable_message_goes_to_dead_letter(settings: Settings) -> None:
    topo = Topology()
    jobs = topo.topic("jobs", Job)
    dead = topo.topic("jobs.dlq", DeadLetter)
    out: asyncio.Queue[Record] = asyncio.Queue()
    letters: asyncio.Queue[Record] = asyncio.Queue()
    topo.agent(Agent("take", jobs, sink(out)))  # type: ignore[arg-type]
    topo.agent(Agent("letters", dead, sink(letters)))  # type: ignore[arg-type]
    runner = FaustRunner(topo, settings)
    await runner.start()
    try:
        assert runner.app is not None
        await runner.app.producer.send_and_wait(runner.kafka_topic(jobs), b"x", b"not json",
                                                partition=None, timestamp=None, headers=None)
        await runner.send(jobs, Job(id="x", n=1))
        (letter,) = await collect(letters, 1)
        (ok,) = await collect(out, 1)
    finally:
        await runner.stop()
    assert isinstance(letter, DeadLetter) and letter.payload == "not json"
    assert ok == Job(id="x", n=1)


async def test_batch_interrupted_by_stop_is_delivered_again(settings: Settings) -> None:
    """At-least-once across a restart: handled records are committed, an unfinished one is not."""
    handled: list[int] = []
    hang = asyncio.Event()
    last_done = asyncio.Event()
    release = asyncio.Event()

    def topology(stuck_on: int | None) -> tuple[Topology, Topic[Job]]:
        topo = Topology()
        jobs = topo.topic("jobs", Job)

        async def work(job: Job) -> Sequence[Emit]:
            if job.n == stuck_on:
                hang.set()
                await release.wait()  # never set: the runner has to give up on it
            handled.append(job.n)
            if job.n == 3:
                last_done.set()
            return ()

        topo.agent(Agent("work", jobs, each(work)))
        return topo, jobs

    topo, jobs = topology(stuck_on=2)
    first = FaustRunner(topo, settings, stop_grace=0.5)
    await first.start()
    try:
        for i in range(4):
            await first.send(jobs, Job(id="k", n=i))
        await asyncio.wait_for(hang.wait(), WAIT)
    finally:
        await first.stop()
    assert handled == [0, 1]
    last_done.clear()

    topo, jobs = topology(stuck_on=None)
    second = FaustRunner(topo, settings)
    await second.start()
    try:
        await asyncio.wait_for(last_done.wait(), WAIT)
    finally:
        await second.stop()
    # 0 and 1 were committed by the first runner's stop; 2 (interrupted) and 3 come again.
    assert handled == [0, 1, 2, 3]


async def test_producer_only_runner_feeds_the_workers(settings: Settings) -> None:
    """The API's runner (consume=False) publishes; a worker's runner on the same prefix consumes."""
    topo = Topology()
    jobs = topo.topic("jobs", Job)
    out: asyncio.Queue[Record] = asyncio.Queue()
    topo.agent(Agent("take", jobs, sink(out)))  # type: ignore[arg-type]
    worker = FaustRunner(topo, settings)
    api = FaustRunner(topo, settings, consume=False)
    await worker.start()
    await api.start()
    try:
        for i in range(3):
            await api.send(jobs, Job(id=f"k{i}", n=i))
        got = await collect(out, 3)
    finally:
        await api.stop()
        await worker.stop()
    assert sorted(r.n for r in got) == [0, 1, 2]  # type: ignore[attr-defined]
    assert api.published == {"jobs": 3} and worker.published == {}


async def test_a_slow_partition_does_not_hold_up_the_others(settings: Settings) -> None:
    """Each partition has its own worker, as in the memory runner: a stuck key blocks only its own."""
    partitions = list(range(settings.topic_partitions))
    partition_of = DefaultPartitioner()  # the producer's: murmur2 of the key, as Java clients
    keys = [f"k{i}" for i in range(20)]
    slow = keys[0]
    fast = next(k for k in keys
                if partition_of(k.encode(), partitions, partitions)
                != partition_of(slow.encode(), partitions, partitions))
    topo = Topology()
    jobs = topo.topic("jobs", Job)
    release = asyncio.Event()
    fast_done = asyncio.Event()

    async def work(job: Job) -> Sequence[Emit]:
        if job.id == slow:
            await asyncio.wait_for(release.wait(), WAIT)
        else:
            fast_done.set()
        return ()

    # concurrency=2: `each` bounds the whole agent, across partitions, by its concurrency.
    topo.agent(Agent("work", jobs, each(work, concurrency=2)))
    runner = FaustRunner(topo, settings)
    await runner.start()
    try:
        await runner.send(jobs, Job(id=slow, n=0))
        await runner.send(jobs, Job(id=fast, n=1))
        await asyncio.wait_for(fast_done.wait(), WAIT)
        release.set()
    finally:
        await runner.stop()
