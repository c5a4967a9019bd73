"""The topology as data: which agent reads which topic and may write which others.

Both runners take the same `Topology`, so embedded mode and the cluster run the
exact same graph. A handler gets a batch of records (one, unless the agent asks
for more) and returns the records to emit; the runner delivers them before it
acknowledges the input, which is what makes processing at-least-once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from streams.record import Record

R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class Topic(Generic[R]):
    """A topic: its name without the deployment prefix, and the record type it carries."""

    name: str
    record: type[R]

    def decode(self, data: bytes | str) -> R:
        return self.record.from_bytes(data)


@dataclass(frozen=True)
class Emit:
    """A record to publish on a topic as the result of handling an input."""

    topic: Topic[Any]
    record: Record


Handler = Callable[[Sequence[Any]], Awaitable[Sequence[Emit]]]


@dataclass(frozen=True)
class Agent:
    """One stage: reads `source`, may emit to `outputs`.

    `batch_size` > 1 lets a sink (the ClickHouse writer) take up to that many
    records at once, waiting at most `batch_wait` seconds for a batch to fill.
    """

    name: str
    source: Topic[Any]
    handler: Handler
    outputs: tuple[Topic[Any], ...] = ()
    batch_size: int = 1
    batch_wait: float = 0.0
    max_attempts: int = 3


@dataclass
class Topology:
    topics: list[Topic[Any]] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)

    def topic(self, name: str, record: type[R]) -> Topic[R]:
        found = next((t for t in self.topics if t.name == name), None)
        if found is not None:
            if found.record is not record:
                raise ValueError(f"topic {name!r} declared twice with different record types")
            return found
        created: Topic[R] = Topic(name, record)
        self.topics.append(created)
        return created

    def agent(self, agent: Agent) -> Agent:
        if any(a.name == agent.name for a in self.agents):
            raise ValueError(f"agent {agent.name!r} declared twice")
        for t in (agent.source, *agent.outputs):
            if t not in self.topics:
                self.topics.append(t)
        self.agents.append(agent)
        return agent

    def check_emits(self, agent: Agent, emits: Sequence[Emit]) -> None:
        """Refuse an emit to a topic the agent did not declare: the graph stays the truth."""
        for emit in emits:
            if emit.topic not in agent.outputs:
                raise ValueError(f"agent {agent.name!r} emitted to undeclared topic {emit.topic.name!r}")


def each(fn: Callable[[Any], Awaitable[Sequence[Emit]]], concurrency: int = 1) -> Handler:
    """Make a batch handler from a per-record function.

    Records with different keys run concurrently (up to `concurrency`); records
    with the same key run one after the other in arrival order, so per-key
    ordering holds however large the batch. Outputs keep the input order. The
    limit is shared by every partition's consumer: it bounds the whole agent.
    """
    gate = asyncio.Semaphore(concurrency)

    async def handler(records: Sequence[Any]) -> Sequence[Emit]:
        groups: dict[str, list[int]] = {}
        for i, rec in enumerate(records):
            groups.setdefault(rec.key, []).append(i)
        results: list[Sequence[Emit]] = [() for _ in records]

        async def run_group(indexes: list[int]) -> None:
            for i in indexes:
                async with gate:
                    results[i] = await fn(records[i])

        async with asyncio.TaskGroup() as tg:
            for indexes in groups.values():
                tg.create_task(run_group(indexes))
        return [emit for out in results for emit in out]

    return handler
