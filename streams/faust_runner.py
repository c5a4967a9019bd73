"""The Kafka runner: the same topology as `memory.MemoryRunner`, run by Faust over Apache Kafka.

Faust runs inside the caller's event loop (our own async main or a FastAPI
lifespan): `start()` builds a `faust.App`, declares every topic with the
configured partition count and awaits `app.start()`; `stop()` drains and awaits
`app.stop()`. No `faust worker`, no `app.main()`, no web server of Faust's.

Semantics are those of the memory runner because both hand raw messages to the
same `delivery.handle_messages` (decode, handle, retry, dead-letter):

- per-key ordering: records are keyed, a key maps to one partition, and each
  agent handles a partition one batch at a time, in a worker task per partition
  (partitions run in parallel; concurrency inside a batch is the handler's
  business, see `topology.each`);
- batching: an agent with `batch_size` > 1 gets up to that many records of one
  partition, waiting at most `batch_wait` seconds for the batch to fill;
- at-least-once: a batch's outputs (and dead letters) are produced and
  acknowledged by the broker *before* its input offsets may be committed. Faust
  acks an event as soon as its stream moves on, so each message gets an extra
  reference that only the worker's ack after publishing releases: a batch
  interrupted by a stop stays unacked, is not committed, and is delivered again
  to the next consumer;
- failures: a handler that keeps raising, or a message that does not decode,
  ends on `<topic>.dlq` and the stream goes on.

Topic names on Kafka are `<topic_prefix>.<topic name>`; the Faust app id (and so
the consumer group) is the topic prefix. Nothing here knows what an image is.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from imgkit.errors import ServiceUnavailable
from imgkit.settings import Settings
from streams.delivery import dead_letter_topic, handle_messages
from streams.record import Record
from streams.runner import Runner
from streams.topology import Agent, Emit, Topic, Topology

R = TypeVar("R", bound=Record)

log = logging.getLogger("imgkit.streams.faust")

#: Longest pause between attempts to publish a batch's outputs. Publishing is
#: retried until it succeeds (or the runner stops): giving up would mean either
#: dropping outputs or committing an input whose outputs were never written.
DELIVERY_BACKOFF_MAX = 30.0

#: Events buffered per agent and partition ahead of the batch being handled.
WORKER_QUEUE_SIZE = 32


TOPICS_READY_WITHIN = 60.0
"""Seconds to wait for new topics to appear in the broker's metadata."""


async def ensure_topics(bootstrap: str, names: list[str], partitions: int, replication: int) -> None:
    """Create `names` (existing ones are fine) and wait until the broker's metadata lists them.

    Faust creates its source topics just before it subscribes, but the group's first
    assignment can run before the new topics reach the broker's metadata: the assignor
    then logs "Ignoring missing topic" and the agent gets no partitions until a metadata
    refresh minutes later (seen in CI on a freshly started broker). Waiting here first
    makes the first assignment complete.
    """
    missing = list(names)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(TOPICS_READY_WITHIN):
            existing = set(await admin.list_topics())
            missing = [n for n in names if n not in existing]
            if missing:
                # Topics another process creates at the same moment come back as errors in the
                # response (TopicAlreadyExists); the metadata poll below is what decides.
                await admin.create_topics([NewTopic(n, partitions, replication) for n in missing])
            while missing:
                existing = set(await admin.list_topics())
                missing = [n for n in names if n not in existing]
                if missing:
                    await asyncio.sleep(0.1)
    except TimeoutError:
        raise ServiceUnavailable(f"Kafka at {bootstrap} did not list topics {missing} within "
                                 f"{TOPICS_READY_WITHIN:g} s", bootstrap=bootstrap) from None
    finally:
        await admin.close()


def broker_urls(bootstrap: str) -> list[str]:
    """`host:port,host:port` (our setting) as the `kafka://` URLs Faust expects."""
    hosts = [part.strip() for part in bootstrap.split(",") if part.strip()]
    if not hosts:
        raise ValueError("no Kafka bootstrap server given (IMGKIT_KAFKA_BOOTSTRAP)")
    return [h if "://" in h else f"kafka://{h}" for h in hosts]


class FaustRunner:
    """Runs a `Topology` on Kafka with Faust, inside the running asyncio loop.

    `stop_grace` is how long `stop()` lets batches in progress finish (their
    offsets are then committed); batches still running after it are cancelled
    and left uncommitted, to be handled again after a restart.

    `consume=False` makes a producer only (the API process): it runs no agents and
    does not join the consumer group, whose members would otherwise rebalance
    every time an API process starts or stops.
    """

    def __init__(self, topology: Topology, settings: Settings, *, replication: int = 1,
                 stop_grace: float = 10.0, stop_timeout: float = 30.0,
                 commit_interval: float = 1.0, consume: bool = True) -> None:
        self.topology = topology
        self.settings = settings
        self.replication = replication
        self.stop_grace = stop_grace
        self.stop_timeout = stop_timeout
        self.commit_interval = commit_interval
        self.consume = consume
        self.app: faust.App | None = None
        self._topics: dict[str, Any] = {}  # Kafka topic name -> faust Topic
        self._datadir: str | None = None
        self._stopping = False
        self._queues: dict[tuple[str, int], asyncio.Queue[tuple[Any, Any]]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        #: Records published per topic (our topic names, not Kafka's): for tests and metrics.
        self.published: dict[str, int] = {}

    # --- names ------------------------------------------------------------------------

    def kafka_topic(self, topic: Topic[Any]) -> str:
        """The Kafka topic name of a topology topic: the deployment prefix keeps deployments apart."""
        return self.settings.topic(topic.name)

    def _all_topics(self) -> list[Topic[Any]]:
        topics: list[Topic[Any]] = list(self.topology.topics)
        for agent in self.topology.agents:
            for extra in (agent.source, *agent.outputs, dead_letter_topic(agent.source)):
                if extra not in topics:
                    topics.append(extra)
        return topics

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Create the Faust app in this loop, declare the topics, start consuming.

        Returns once the consumer has its first partition assignment, so a record
        sent right after `start()` is consumed by this process (in a group of one).
        """
        if self.app is not None:
            return
        self._stopping = False
        self._datadir = tempfile.mkdtemp(prefix="imgkit-faust-")
        app = faust.App(
            self.settings.topic_prefix,
            broker=broker_urls(self.settings.kafka_bootstrap),
            # Faust's own web server (port 6066) would collide between processes and we have
            # FastAPI for health and metrics.
            web_enabled=False,
            # Faust writes table state under datadir (default: ./<id>-data in the cwd); we
            # keep no Faust tables, so a private temporary directory is enough.
            datadir=self._datadir,
            autodiscover=False,
            topic_partitions=self.settings.topic_partitions,
            topic_replication_factor=self.replication,
            # Our own drain in stop() replaces Faust's wait for empty streams: Faust's waits
            # without a bound, and would wait for ever on a batch we left unacked on purpose.
            stream_wait_empty=False,
            broker_commit_interval=self.commit_interval,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
        )
        for topic in self._all_topics():
            name = self.kafka_topic(topic)
            # internal=True: Faust creates the topic (with our partition count) before it
            # subscribes, instead of the broker auto-creating it with its default count.
            self._topics[name] = app.topic(
                name, key_type=bytes, value_type=bytes, key_serializer="raw",
                value_serializer="raw", partitions=self.settings.topic_partitions,
                replicas=self.replication, internal=True)
        if self.consume:
            for agent in self.topology.agents:
                self._add_agent(app, agent)
        else:
            app.producer_only = True
        self.app = app
        started = time.monotonic()
        try:
            await ensure_topics(self.settings.kafka_bootstrap, list(self._topics),
                                self.settings.topic_partitions, self.replication)
            await app.start()
            # Sources were declared by the subscription; outputs and dead-letter topics are
            # declared here so that the first emit does not auto-create them with the
            # broker's default partition count.
            for faust_topic in self._topics.values():
                await faust_topic.maybe_declare()
        except BaseException:
            await self.stop()
            raise
        log.info("faust runner started", extra={
            "app_id": self.settings.topic_prefix, "bootstrap": self.settings.kafka_bootstrap,
            "agents": len(self.topology.agents) if self.consume else 0,
            "partitions": self.settings.topic_partitions,
            "seconds": round(time.monotonic() - started, 2)})

    async def stop(self) -> None:
        """Let running batches finish (up to `stop_grace`), commit, stop Faust; never hang."""
        app = self.app
        if app is None:
            return
        self._stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), self.stop_grace)
        except TimeoutError:
            log.warning("stopping with batches in progress: they stay uncommitted and will be "
                        "handled again", extra={"in_flight": self._in_flight})
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        self._queues.clear()
        try:
            await asyncio.wait_for(app.stop(), self.stop_timeout)
        except TimeoutError:
            log.error("faust app did not stop in time", extra={"seconds": self.stop_timeout})
        finally:
            self.app = None
            self._topics.clear()
            if self._datadir is not None:
                shutil.rmtree(self._datadir, ignore_errors=True)
                self._datadir = None
        log.info("faust runner stopped", extra={"app_id": self.settings.topic_prefix})

    # --- producing --------------------------------------------------------------------

    async def send(self, topic: Topic[R], record: R) -> None:
        """Publish one record and wait until the broker has it (acks=all)."""
        app = self._require_app()
        name = self.kafka_topic(topic)
        if name not in self._topics:
            raise ValueError(f"topic {topic.name!r} is not part of the topology")
        await app.producer.send_and_wait(name, record.key.encode(), record.to_bytes(),
                                         partition=None, timestamp=None, headers=None)
        self.published[topic.name] = self.published.get(topic.name, 0) + 1

    async def _deliver(self, emits: Sequence[Emit]) -> None:
        """Publish a batch's outputs, in order, and wait until the broker has all of them.

        All sends are issued before any is awaited: the producer keeps their order per
        partition (so per key) and batches them. On an error the whole list is sent
        again, which may duplicate some records: consumers are idempotent by design.
        """
        if not emits:
            return
        app = self._require_app()
        delay = 0.2
        while True:
            try:
                pending = [
                    await app.producer.send(self.kafka_topic(e.topic), e.record.key.encode(),
                                            e.record.to_bytes(), None, None, None)
                    for e in emits]
                await asyncio.gather(*pending)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("publishing outputs failed; retrying",
                            extra={"records": len(emits), "error": repr(exc), "retry_in": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, DELIVERY_BACKOFF_MAX)
            else:
                for e in emits:
                    self.published[e.topic.name] = self.published.get(e.topic.name, 0) + 1
                return

    # --- consuming --------------------------------------------------------------------

    def _add_agent(self, app: faust.App, agent: Agent) -> None:
        """One Faust agent per topology agent; it only dispatches events to partition workers.

        Faust runs an agent's stream over all its partitions one event at a time;
        handling in that loop would serialise every partition behind the slowest
        record. Instead each partition gets a worker task (as in the memory runner),
        so partitions proceed in parallel and each keeps its order.
        """
        source = self._topics[self.kafka_topic(agent.source)]

        async def dispatch(stream: Any) -> None:
            async for event in stream.events():
                # The stream acks the event when it moves on to the next one; this extra
                # reference keeps the offset uncommitted until the worker has published
                # the event's outputs and acks it a second time (the final ack).
                event.message.incref()
                if self._stopping:
                    continue  # stop() has begun: leave it unacked for the next consumer
                await self._worker_queue(agent, event.message.partition).put((stream, event))

        # concurrency=1: Faust's concurrent agent instances would share the stream and
        # lose per-key order; parallelism comes from the partition workers.
        app.agent(source, name=f"{self.settings.topic_prefix}.{agent.name}", concurrency=1)(dispatch)

    def _worker_queue(self, agent: Agent, partition: int) -> asyncio.Queue[tuple[Any, Any]]:
        key = (agent.name, partition)
        queue = self._queues.get(key)
        if queue is None:
            # Small: Kafka holds the backlog; this only lets a batch fill while one runs.
            queue = asyncio.Queue(maxsize=max(2 * agent.batch_size, WORKER_QUEUE_SIZE))
            self._queues[key] = queue
            self._workers.append(asyncio.create_task(
                self._work(agent, queue), name=f"faust:{agent.name}[{partition}]"))
        return queue

    async def _work(self, agent: Agent, queue: asyncio.Queue[tuple[Any, Any]]) -> None:
        """Take batches from one partition's queue (`batch_size`, `batch_wait`) and handle them."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + agent.batch_wait
            while len(batch) < agent.batch_size:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            if self._stopping:
                continue  # not started before stop(): left unacked, handled after a restart
            await self._handle(agent, batch)

    async def _handle(self, agent: Agent, batch: Sequence[tuple[Any, Any]]) -> None:
        """Handle one batch; ack its messages (allowing their commit) once its outputs are out."""
        self._in_flight += 1
        self._idle.clear()
        try:
            raw = [event.message.value or b"" for _, event in batch]
            emits = await handle_messages(agent, raw)
            await self._deliver(emits)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        for stream, event in batch:
            await stream.ack(event)

    def _require_app(self) -> faust.App:
        if self.app is None:
            raise RuntimeError("FaustRunner is not started")
        return self.app


__all__ = ["FaustRunner", "broker_urls"]

if TYPE_CHECKING:
    def _is_a_runner(runner: FaustRunner) -> Runner:
        """Fails type checking if FaustRunner stops matching the interface both runners share."""
        return runner
