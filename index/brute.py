"""Brute force: one XOR + popcount over every hash per query. The correctness oracle.

Deliberately the simplest structure that can work (a growable uint64 array, a list of
ids, a dict id -> row, swap-remove) and shares no code with the other engines' storage,
so that when the property tests compare an engine with it they compare two independent
implementations. It is also a fine engine for small accounts: below ~100k hashes a scan
is faster than building anything.
"""

from __future__ import annotations

import sys

import numpy as np

from imgkit.errors import BadRequest
from index.engine import (
    HashIndex,
    IdsLike,
    Match,
    as_hash_array,
    as_id_bytes,
    check_distance,
    check_hash,
    check_id,
    check_k,
    kth_smallest,
    popcount_xor,
    sort_matches,
)


class BruteForceIndex(HashIndex):
    """Exact search by scanning every hash (numpy XOR + `np.bitwise_count`)."""

    name = "brute"

    def __init__(self) -> None:
        self._hashes = np.zeros(16, dtype=np.uint64)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def _live(self) -> np.ndarray:
        return self._hashes[: len(self._ids)]

    def add(self, id: str, hash: int) -> None:
        id, hash = check_id(id), check_hash(hash)
        row = self._rows.get(id)
        if row is not None:
            self._hashes[row] = hash
            return
        n = len(self._ids)
        if n == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros(n, dtype=np.uint64)])
        self._hashes[n] = hash
        self._ids.append(id)
        self._rows[id] = n

    def add_many(self, ids: IdsLike, hashes: np.ndarray) -> None:
        id_bytes, hash_array = as_id_bytes(ids), as_hash_array(hashes)
        if len(id_bytes) != len(hash_array):
            raise BadRequest("ids and hashes differ in length", ids=len(id_bytes), hashes=len(hash_array))
        decoded = [b.decode("utf-8") for b in id_bytes.tolist()]
        if not self._ids and len(set(decoded)) == len(decoded):
            # fast path of a bulk build: no replacement possible
            self._hashes = hash_array.copy() if len(hash_array) else np.zeros(16, dtype=np.uint64)
            self._ids = decoded
            self._rows = {i: row for row, i in enumerate(decoded)}
            return
        for i, h in zip(decoded, hash_array.tolist(), strict=True):
            self.add(i, h)

    def remove(self, id: str) -> bool:
        row = self._rows.pop(id, None)
        if row is None:
            return False
        last = len(self._ids) - 1
        if row != last:  # swap-remove keeps rows dense without shifting
            moved = self._ids[last]
            self._ids[row] = moved
            self._hashes[row] = self._hashes[last]
            self._rows[moved] = row
        self._ids.pop()
        return True

    def get(self, id: str) -> int | None:
        row = self._rows.get(id)
        return None if row is None else int(self._hashes[row])

    def within(self, hash: int, max_distance: int) -> list[Match]:
        query, radius = check_hash(hash), check_distance(max_distance)
        dist = popcount_xor(self._live(), query)
        rows = np.flatnonzero(dist <= radius)
        return sort_matches((int(dist[r]), self._ids[r]) for r in rows.tolist())

    def nearest(self, hash: int, k: int) -> list[Match]:
        query, k = check_hash(hash), check_k(k)
        n = len(self._ids)
        if k == 0 or n == 0:
            return []
        dist = popcount_xor(self._live(), query)
        if k < n:
            # every id at the k-th smallest distance competes on id, so keep them all
            kth = kth_smallest(dist, k)
            rows = np.flatnonzero(dist <= kth)
        else:
            rows = np.arange(n)
        return sort_matches((int(dist[r]), self._ids[r]) for r in rows.tolist())[:k]

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        return as_id_bytes(self._ids), self._live().copy()

    def memory_bytes(self) -> int:
        strings = sum(sys.getsizeof(i) for i in self._ids)
        return (self._hashes.nbytes + sys.getsizeof(self._ids) + sys.getsizeof(self._rows) + strings)
