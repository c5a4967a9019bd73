"""The Kafka runner: the same topology as `memory.MemoryRunner`, run by Faust over Apache Kafka.

Faust runs inside the caller's event loop (our own async main or a FastAPI
lifespan): `start()` builds a `faust.App`, declares every topic with the
configured partition count and awaits `app.start()`; `stop()` drains and awaits
`app.stop()`. No `faust worker`, no `app.main()`, no web server of Faust's.

Semantics are those of the memory runner because both hand raw messages to the
same `delivery.handle_messages` (decode, handle, retry, dead-letter):

- per-key ordering: records are keyed, a key maps to one partition, and each
  agent consumes its partitions one batch at a time (concurrency inside a batch
  is the handler's business, see `topology.each`);
- batching: an agent with `batch_size` > 1 gets up to that many records,
  waiting at most `batch_wait` seconds for the batch to fill (`take_events`);
- at-least-once: a batch's outputs (and dead letters) are produced and
  acknowledged by the broker *before* its input offsets may be committed. Faust
  acks a `take_events` batch when the loop body returns, and also when the agent
  is cancelled in the middle of it, so each message gets an extra reference for
  the time it is handled: a batch interrupted by a stop stays unacked, is not
  committed, and is delivered again to the next consumer;
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
from typing import TYPE_CHECKING, Any

import faust

from imgkit.settings import Settings
from streams.delivery import dead_letter_topic, handle_messages
from streams.record import Record
from streams.runner import Runner
from streams.topology import Agent, Emit, Topic, Topology

log = logging.getLogger("imgkit.streams.faust")

#: Longest pause between attempts to publish a batch's outputs. Publishing is
#: retried until it succeeds (or the runner stops): giving up would mean either
#: dropping outputs or committing an input whose outputs were never written.
DELIVERY_BACKOFF_MAX = 30.0

#: `take_events` needs a finite wait, or a partial batch would wait for ever.
_MIN_BATCH_WAIT = 0.01


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
    """

    def __init__(self, topology: Topology, settings: Settings, *, replication: int = 1,
                 stop_grace: float = 10.0, stop_timeout: float = 30.0,
                 commit_interval: float = 1.0) -> None:
        self.topology = topology
        self.settings = settings
        self.replication = replication
        self.stop_grace = stop_grace
        self.stop_timeout = stop_timeout
        self.commit_interval = commit_interval
        self.app: faust.App | None = None
        self._topics: dict[str, Any] = {}  # Kafka topic name -> faust Topic
        self._datadir: str | None = None
        self._stopping = False
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
        for agent in self.topology.agents:
            self._add_agent(app, agent)
        self.app = app
        started = time.monotonic()
        await app.start()
        # Sources were declared by the subscription; outputs and dead-letter topics are
        # declared here so that the first emit does not auto-create them with other counts.
        for faust_topic in self._topics.values():
            await faust_topic.maybe_declare()
        log.info("faust runner started", extra={
            "app_id": self.settings.topic_prefix, "bootstrap": self.settings.kafka_bootstrap,
            "agents": len(self.topology.agents), "partitions": self.settings.topic_partitions,
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

    async def send(self, topic: Topic[Record], record: Record) -> None:
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
        source = self._topics[self.kafka_topic(agent.source)]
        within = max(agent.batch_wait, _MIN_BATCH_WAIT)

        async def consume(stream: Any) -> None:
            async for events in stream.take_events(agent.batch_size, within=within):
                await self._handle(agent, events)

        # concurrency=1: one batch at a time per agent, which is what keeps per-key order.
        app.agent(source, name=f"{self.settings.topic_prefix}.{agent.name}", concurrency=1)(consume)

    async def _handle(self, agent: Agent, events: Sequence[Any]) -> None:
        """Handle one batch; release its messages for commit only once its outputs are out."""
        for event in events:
            # The extra reference keeps the offset from being committed by the ack that
            # take_events does after this returns *or is cancelled*; it is dropped below
            # only on success, so that ack then becomes the final one.
            pass  # MUTATION
        if self._stopping:
            return  # stop() has begun: leave the batch unacked for the next consumer
        self._in_flight += 1
        self._idle.clear()
        try:
            raw = [event.message.value or b"" for event in events]
            emits = await handle_messages(agent, raw)
            await self._deliver(emits)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        for event in events:
            event.message.decref()

    def _require_app(self) -> faust.App:
        if self.app is None:
            raise RuntimeError("FaustRunner is not started")
        return self.app


__all__ = ["FaustRunner", "broker_urls"]

if TYPE_CHECKING:
    def _is_a_runner(runner: FaustRunner) -> Runner:
        """Fails type checking if FaustRunner stops matching the interface both runners share."""
        return runner
