"""The in-process bus: round-trip, per-key order, dead letters, back-pressure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from streams.delivery import DeadLetter, dead_letter_topic
from streams.memory import MemoryRunner
from streams.topology import Agent, Emit, Topology
from tests.support.echo import PINGS, PONGS, Ping, Pong, echo_topology


def collector(topology: Topology) -> tuple[list[Pong], list[DeadLetter]]:
    pongs: list[Pong] = []
    dead: list[DeadLetter] = []

    async def take_pongs(records: Sequence[Pong]) -> Sequence[Emit]:
        pongs.extend(records)
        return []

    async def take_dead(records: Sequence[DeadLetter]) -> Sequence[Emit]:
        dead.extend(records)
        return []

    topology.agent(Agent("collect", PONGS, take_pongs))
    topology.agent(Agent("collect-dead", dead_letter_topic(PINGS), take_dead))  # type: ignore[arg-type]
    return pongs, dead


async def test_round_trip_keeps_per_key_order() -> None:
    topology = echo_topology()
    pongs, dead = collector(topology)
    runner = MemoryRunner(topology, partitions=3, queue_size=16)
    await runner.start()
    try:
        for seq in range(50):
            await runner.send(PINGS, Ping(ident=f"k{seq % 5}", seq=seq, text=f"hi {seq}"))
        await asyncio.wait_for(runner.drain(), 10)
    finally:
        await runner.stop()
    assert len(pongs) == 50 and not dead
    assert {p.shout for p in pongs} == {f"HI {s}" for s in range(50)}
    for key in {p.ident for p in pongs}:
        seqs = [p.seq for p in pongs if p.ident == key]
        assert seqs == sorted(seqs), f"key {key} out of order: {seqs}"


async def test_poison_record_goes_to_dead_letters_and_stream_goes_on() -> None:
    topology = echo_topology(fail_on="boom")
    pongs, dead = collector(topology)
    runner = MemoryRunner(topology, partitions=1)
    await runner.start()
    try:
        await runner.send(PINGS, Ping(ident="a", seq=1, text="first"))
        await runner.send(PINGS, Ping(ident="b", seq=2, text="boom"))
        await runner.send(PINGS, Ping(ident="a", seq=3, text="after"))
        await asyncio.wait_for(runner.drain(), 10)
    finally:
        await runner.stop()
    assert sorted(p.shout for p in pongs) == ["AFTER", "FIRST"]
    assert len(dead) == 1
    letter = dead[0]
    assert letter.agent == "shout" and letter.message_key == "b" and "cannot shout" in letter.error
    assert Ping.from_bytes(letter.payload).text == "boom"  # replayable


async def test_external_send_waits_when_partition_is_full() -> None:
    gate = asyncio.Event()
    seen: list[Ping] = []

    async def slow(records: Sequence[Ping]) -> Sequence[Emit]:
        await gate.wait()
        seen.extend(records)
        return []

    topology = Topology()
    topology.agent(Agent("slow", PINGS, slow))
    runner = MemoryRunner(topology, partitions=1, queue_size=2)
    await runner.start()
    try:
        for seq in range(3):  # one taken by the agent, two queued: full
            await asyncio.wait_for(runner.send(PINGS, Ping(ident="x", seq=seq, text="")), 1)
        blocked = asyncio.create_task(runner.send(PINGS, Ping(ident="x", seq=3, text="")))
        await asyncio.sleep(0.1)
        assert not blocked.done(), "send should wait for room (back-pressure)"
        gate.set()
        await asyncio.wait_for(blocked, 5)
        await asyncio.wait_for(runner.drain(), 5)
    finally:
        await runner.stop()
    assert [p.seq for p in seen] == [0, 1, 2, 3]


async def test_undecodable_message_is_dead_lettered() -> None:
    from streams.delivery import handle_messages

    topology = echo_topology()
    agent = topology.agents[0]
    emits = await handle_messages(agent, [b'{"ident": "a"}', Ping(ident="b", seq=1, text="ok").to_bytes()])
    topics = [e.topic.name for e in emits]
    assert topics == ["test.pings.dlq", "test.pongs"]
    assert "invalid record" in emits[0].record.error  # type: ignore[attr-defined]
