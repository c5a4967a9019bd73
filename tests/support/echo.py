"""A tiny topology that both runner tests drive: the same agent on each transport."""

from __future__ import annotations

from collections.abc import Sequence

from streams.record import Record
from streams.topology import Agent, Emit, Topic, Topology, each


class Ping(Record):
    key_field = "ident"
    ident: str
    seq: int
    text: str


class Pong(Record):
    key_field = "ident"
    ident: str
    seq: int
    shout: str


PINGS = Topic("test.pings", Ping)
PONGS = Topic("test.pongs", Pong)


def echo_topology(fail_on: str = "boom") -> Topology:
    """`pings` → shout → `pongs`; a ping whose text is `fail_on` raises (a poison record)."""

    async def shout(ping: Ping) -> Sequence[Emit]:
        if ping.text == fail_on:
            raise RuntimeError(f"cannot shout {ping.text!r}")
        return [Emit(PONGS, Pong(ident=ping.key, seq=ping.seq, shout=ping.text.upper()))]

    topology = Topology()
    topology.agent(Agent("shout", PINGS, each(shout, 4), outputs=(PONGS,), batch_size=8,
                         max_attempts=2))
    return topology
