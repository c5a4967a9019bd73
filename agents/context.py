"""What agents need from the outside world, built once per process and passed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

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
    fetch_client: httpx.AsyncClient  # guarded downloads (imaging.fetch.make_client)
    webhook_client: httpx.AsyncClient  # guarded too, with its own allow-private setting
    index: HashSink | None = None
