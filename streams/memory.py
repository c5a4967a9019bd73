"""The in-process bus: the same topology as on Kafka, on asyncio queues.

Each topic has `partitions` partitions, chosen by a stable hash of the record's
key, and each agent consumes every partition with one task, so records of one
key are handled in order, like a Kafka consumer group of one member per agent.
Records travel as JSON bytes, as on Kafka, so no agent can share a mutable
object with another or depend on something Kafka would not carry.

Back-pressure: `send` from outside (the API) waits while the partition holds
`queue_size` records. Emits from inside the graph never wait, because a stage
may feed itself (the webhook retry topic) and a bounded self-cycle deadlocks;
the external bound is what keeps memory flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import deque
from collections.abc import Sequence

from streams.delivery import handle_messages
from streams.record import Record
from streams.topology import Agent, Emit, R, Topic, Topology

log = logging.getLogger("imgkit.streams.memory")


def partition_for(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


class _Partition:
    """An unbounded FIFO with a soft bound that external producers wait on."""

    def __init__(self, bound: int) -> None:
        self.items: deque[bytes] = deque()
        self.bound = bound
        self.changed = asyncio.Condition()
        self.in_flight = 0

    async def put(self, item: bytes, *, wait_for_room: bool) -> None:
        async with self.changed:
            if wait_for_room:
                await self.changed.wait_for(lambda: len(self.items) < self.bound)
            self.items.append(item)
            self.changed.notify_all()

    async def take(self, max_items: int, wait: float) -> list[bytes]:
        async with self.changed:
            await self.changed.wait_for(lambda: bool(self.items))
            batch = [self.items.popleft()]
            if max_items > 1 and wait > 0 and len(self.items) < max_items - 1:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.changed.wait_for(lambda: len(self.items) >= max_items - 1), wait)
            while self.items and len(batch) < max_items:
                batch.append(self.items.popleft())
            self.in_flight += len(batch)
            self.changed.notify_all()
            return batch

    async def done(self, count: int) -> None:
        async with self.changed:
            self.in_flight -= count
            self.changed.notify_all()

    async def idle(self) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: not self.items and self.in_flight == 0)


class MemoryRunner:
    def __init__(self, topology: Topology, *, partitions: int = 4, queue_size: int = 256) -> None:
        self.topology = topology
        self.partitions = partitions
        self.queue_size = queue_size
        self._queues: dict[tuple[str, str], list[_Partition]] = {}
        self._subscribers: dict[str, list[Agent]] = {}
        for agent in topology.agents:
            self._subscribers.setdefault(agent.source.name, []).append(agent)
            self._queues[(agent.name, agent.source.name)] = [
                _Partition(queue_size) for _ in range(partitions)]
        self._tasks: list[asyncio.Task[None]] = []
        self.published: dict[str, int] = {}

    async def start(self) -> None:
        for agent in self.topology.agents:
            for index, part in enumerate(self._queues[(agent.name, agent.source.name)]):
                task = asyncio.create_task(self._consume(agent, part), name=f"{agent.name}[{index}]")
                self._tasks.append(task)
        log.info("memory bus started", extra={"agents": len(self.topology.agents),
                                               "partitions": self.partitions})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def send(self, topic: Topic[R], record: R) -> None:
        await self._publish(topic.name, record, external=True)

    async def _publish(self, topic_name: str, record: Record, *, external: bool) -> None:
        payload = record.to_bytes()
        self.published[topic_name] = self.published.get(topic_name, 0) + 1
        index = partition_for(record.key, self.partitions)
        for agent in self._subscribers.get(topic_name, ()):
            await self._queues[(agent.name, topic_name)][index].put(payload, wait_for_room=external)

    async def _deliver(self, emits: Sequence[Emit]) -> None:
        for emit in emits:
            await self._publish(emit.topic.name, emit.record, external=False)

    async def _consume(self, agent: Agent, part: _Partition) -> None:
        while True:
            batch = await part.take(agent.batch_size, agent.batch_wait)
            try:
                emits = await handle_messages(agent, batch)
                await self._deliver(emits)
            finally:
                await part.done(len(batch))

    async def drain(self) -> None:
        """Wait until every queue is empty and nothing is in flight (tests, graceful stop).

        Loops because draining one agent's queue can fill another's.
        """
        parts = [p for ps in self._queues.values() for p in ps]
        while True:
            for part in parts:
                await part.idle()
            await asyncio.sleep(0)
            if all(not p.items and p.in_flight == 0 for p in parts):
                return
