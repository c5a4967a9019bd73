"""One index per (account, hash kind), created on first use.

Accounts never see each other's images, so they never share an index, and each hash kind
(pHash, dHash...) has its own distance space. Engines are created lazily because most
accounts are small or idle; the engine and its options are fixed for the whole set so
that every shard answers the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from imgkit.errors import ConfigError
from index.engine import ENGINE_NAMES, HashIndex, make_index

Key = tuple[str, str]  # (account_id, kind)


class IndexSet:
    """Lazily created engines keyed by (account_id, kind). Not thread-safe: the index
    service applies events and answers queries on one event loop."""

    def __init__(self, engine: str = "mih", **options: Any) -> None:
        if engine not in ENGINE_NAMES:
            raise ConfigError(f"unknown index engine {engine!r}; choose from {', '.join(ENGINE_NAMES)}")
        self.engine = engine
        self._options = options
        self._indexes: dict[Key, HashIndex] = {}

    def get(self, account_id: str, kind: str) -> HashIndex:
        """The index of (account, kind), created empty on first use (for writes)."""
        key = (account_id, kind)
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = make_index(self.engine, **self._options)
        return index

    def peek(self, account_id: str, kind: str) -> HashIndex | None:
        """The index if it exists; queries use this so that reads create nothing."""
        return self._indexes.get((account_id, kind))

    def drop(self, account_id: str, kind: str) -> bool:
        return self._indexes.pop((account_id, kind), None) is not None

    def __len__(self) -> int:
        return len(self._indexes)

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._indexes))

    def items(self) -> Iterator[tuple[Key, HashIndex]]:
        return iter(list(self._indexes.items()))

    def memory_bytes(self) -> int:
        return sum(index.memory_bytes() for index in self._indexes.values())
