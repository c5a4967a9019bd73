"""The interface both runners offer to the rest of ImgKit."""

from __future__ import annotations

from typing import Protocol

from streams.topology import R, Topic


class Runner(Protocol):
    """Runs a topology's agents and lets producers (the API) publish to its topics."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, topic: Topic[R], record: R) -> None:
        """Publish; waits (back-pressure) when the transport is saturated."""
        ...
