"""What agents need from the outside world, built once per process and passed in."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from agents.annotate.pool import ProviderPool
from agents.store import ImageStore
from imaging.source_cache import SourceCache
from imgkit.accounts import AccountStore
from imgkit.db import Database
from imgkit.settings import Settings
from schemas.events import ImageHashes


class HashSink(Protocol):
    """Where hashes go in embedded mode (the in-process index)."""

    async def apply(self, record: ImageHashes) -> None: ...


@dataclass
class AgentContext:
    settings: Settings
    db: Database
    accounts: AccountStore
    sources: SourceCache
    fetch_client: aiohttp.ClientSession  # guarded downloads (imaging.fetch.make_client)
    webhook_client: aiohttp.ClientSession  # guarded too (imaging.fetch.guarded_session), own allow-private
    index: HashSink | None = None
    cpu_gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    """Bounds CPU-bound extraction to IMGKIT_PROCESS_CONCURRENCY threads, while downloads
    (I/O) of further images overlap with it; set from settings by the runtime."""
    providers: ProviderPool = field(default_factory=ProviderPool)  # annotation providers, built once

    @property
    def images(self) -> ImageStore:
        """The `images` table's store (one per Database, shared with the store agent and the API)."""
        return ImageStore.of(self.db)
