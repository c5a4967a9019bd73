"""Compact row storage shared by the built engines (MIH, VP-trees): a frozen base and a delta.

Engines that build a structure over their hashes (bucket tables, trees) cannot afford to
rebuild it on every add, and Python dicts of millions of str would cost ~100 bytes per
hash. So the rows live in two parts:

- the *base*: ids as one fixed-width UTF-8 bytes array sorted by id (so id -> row is a
  binary search and row order is id order, which makes "ties broken by id" a sort by
  row), hashes as uint64, and a liveness mask. Removes and replacements only tombstone a
  base row; the engine's structure is built over the base and never patched;
- the *delta*: recent adds in a small growable array, brute-forced by every query until
  it passes `delta_limit` entries, when base + delta are merged (dead rows dropped) and
  the engine rebuilds its structure. Too many tombstones trigger the same merge.

An id is live in at most one of the two parts.
"""

from __future__ import annotations

import sys
from abc import abstractmethod

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
)

#: The delta is brute-forced by every query, so its cap bounds the latency it adds
#: (65536 hashes scan in ~0.1 ms); merges rebuild everything, so it should not be tiny.
DEFAULT_DELTA_MIN = 1024
DEFAULT_DELTA_MAX = 65536


def expand_ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """All integers in the half-open ranges [starts[i], ends[i]), concatenated, vectorised.

    The engines probe hundreds of buckets or leaves per query; a Python loop over
    them would cost more than verifying the candidates.
    """
    starts = starts.astype(np.int64, copy=False)
    lens = ends.astype(np.int64, copy=False) - starts
    nonempty = lens > 0
    if not nonempty.all():
        starts, lens = starts[nonempty], lens[nonempty]
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.cumsum(lens) - lens - starts
    return np.arange(total, dtype=np.int64) - np.repeat(shift, lens)


def _dedupe_keep_last(ids: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by id, keeping the last occurrence of each id (later adds win)."""
    if len(ids) > 1 and bool((ids[1:] > ids[:-1]).all()):
        return ids, hashes  # already sorted and unique: the common bulk-build case
    order = np.argsort(ids, kind="stable")
    ids, hashes = ids[order], hashes[order]
    last = np.ones(len(ids), dtype=bool)
    last[:-1] = ids[1:] != ids[:-1]
    return ids[last], hashes[last]


class StoreIndex(HashIndex):
    """Base of engines that index a frozen base (see the module docstring)."""

    def __init__(self, *, delta_limit: int | None = None) -> None:
        self._delta_limit_option = delta_limit
        self._ids = np.zeros(0, dtype="S1")
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._alive = np.zeros(0, dtype=bool)
        self._dead = 0
        self._d_ids: list[str] = []
        self._d_pos: dict[str, int] = {}
        self._d_hashes = np.zeros(64, dtype=np.uint64)
        self._build()

    # --- what an engine provides ----------------------------------------------------------

    @abstractmethod
    def _build(self) -> None:
        """(Re)build the engine's structure over `self._hashes` (every base row, alive or not)."""

    @abstractmethod
    def _base_within(self, query: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Live base rows within `radius` (each once, any order) and their distances."""

    def _base_nearest(self, query: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Live base rows that include the k first by (distance, row); engines may do better."""
        return self._brute_nearest(query, k)

    @abstractmethod
    def _structure_bytes(self) -> int:
        """Bytes of the engine's own structure (tables, tree), beyond the rows."""

    # --- brute force over the base, for engines' fallbacks ---------------------------------

    def _brute_within(self, query: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        dist = popcount_xor(self._hashes, query)
        rows = np.flatnonzero((dist <= radius) & self._alive)
        return rows, dist[rows]

    def _brute_nearest(self, query: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist = popcount_xor(self._hashes, query)
        if self._dead:
            dist[~self._alive] = 255  # farther than any real distance
        n_alive = len(dist) - self._dead
        if n_alive <= k:
            rows = np.flatnonzero(self._alive)
        else:
            kth = kth_smallest(dist, k)
            rows = np.flatnonzero(dist <= kth)
        return rows, dist[rows]

    # --- sizes and limits ------------------------------------------------------------------

    @property
    def delta_limit(self) -> int:
        if self._delta_limit_option is not None:
            return max(1, self._delta_limit_option)
        return min(max(len(self._hashes) // 8, DEFAULT_DELTA_MIN), DEFAULT_DELTA_MAX)

    def __len__(self) -> int:
        return len(self._hashes) - self._dead + len(self._d_ids)

    def _base_row(self, id: str) -> int | None:
        key = id.encode("utf-8")
        if len(key) > self._ids.dtype.itemsize or not len(self._ids):
            return None
        row = int(np.searchsorted(self._ids, key))
        if row < len(self._ids) and self._ids[row] == key and self._alive[row]:
            return row
        return None

    def _maybe_merge(self) -> None:
        dead_limit = max(self.delta_limit, len(self._hashes) // 4)
        if len(self._d_ids) > self.delta_limit or self._dead > dead_limit:
            self._merge(np.zeros(0, dtype="S1"), np.zeros(0, dtype=np.uint64))

    def _merge(self, new_ids: np.ndarray, new_hashes: np.ndarray) -> None:
        """New base = live base + delta + `new_*` (later wins), sorted by id; rebuild."""
        n_delta = len(self._d_ids)
        if n_delta:
            new_ids = np.concatenate([as_id_bytes(self._d_ids), new_ids])
            new_hashes = np.concatenate([self._d_hashes[:n_delta], new_hashes])
        new_ids, new_hashes = _dedupe_keep_last(new_ids, new_hashes)
        base_ids, base_hashes = self._ids, self._hashes
        if self._dead:
            base_ids, base_hashes = base_ids[self._alive], base_hashes[self._alive]
        width = max(base_ids.dtype.itemsize, new_ids.dtype.itemsize, 1)
        base_ids = base_ids.astype(f"S{width}", copy=False)
        new_ids = new_ids.astype(f"S{width}", copy=False)
        if len(base_ids) and len(new_ids):
            pos = np.searchsorted(base_ids, new_ids)
            found = pos < len(base_ids)
            found[found] = base_ids[pos[found]] == new_ids[found]
            if found.any():  # replaced ids: drop the old base rows
                keep = np.ones(len(base_ids), dtype=bool)
                keep[pos[found]] = False
                base_ids, base_hashes = base_ids[keep], base_hashes[keep]
            pos = np.searchsorted(base_ids, new_ids)
            self._ids = np.insert(base_ids, pos, new_ids)
            self._hashes = np.insert(base_hashes, pos, new_hashes)
        elif len(new_ids):
            self._ids, self._hashes = new_ids.copy(), new_hashes.copy()
        else:
            self._ids, self._hashes = base_ids.copy(), base_hashes.copy()
        self._alive = np.ones(len(self._ids), dtype=bool)
        self._dead = 0
        self._d_ids, self._d_pos = [], {}
        self._d_hashes = np.zeros(64, dtype=np.uint64)
        self._build()

    # --- HashIndex -------------------------------------------------------------------------

    def add(self, id: str, hash: int) -> None:
        id, hash = check_id(id), check_hash(hash)
        pos = self._d_pos.get(id)
        if pos is not None:
            self._d_hashes[pos] = hash
            return
        row = self._base_row(id)
        if row is not None:  # replacement: the new hash goes to the delta
            self._alive[row] = False
            self._dead += 1
        n = len(self._d_ids)
        if n == len(self._d_hashes):
            self._d_hashes = np.concatenate([self._d_hashes, np.zeros(n, dtype=np.uint64)])
        self._d_hashes[n] = hash
        self._d_ids.append(id)
        self._d_pos[id] = n
        self._maybe_merge()

    def add_many(self, ids: IdsLike, hashes: np.ndarray) -> None:
        id_bytes, hash_array = as_id_bytes(ids), as_hash_array(hashes)
        if len(id_bytes) != len(hash_array):
            raise BadRequest("ids and hashes differ in length", ids=len(id_bytes), hashes=len(hash_array))
        if not len(id_bytes):
            return
        if len(self._hashes) and len(self._d_ids) + len(id_bytes) <= self.delta_limit:
            for i, h in zip(id_bytes.tolist(), hash_array.tolist(), strict=True):
                self.add(i.decode("utf-8"), h)
            return
        self._merge(id_bytes, hash_array)

    def remove(self, id: str) -> bool:
        pos = self._d_pos.pop(id, None)
        if pos is not None:
            last = len(self._d_ids) - 1
            if pos != last:  # swap-remove
                moved = self._d_ids[last]
                self._d_ids[pos] = moved
                self._d_hashes[pos] = self._d_hashes[last]
                self._d_pos[moved] = pos
            self._d_ids.pop()
            return True
        if not isinstance(id, str):
            return False
        row = self._base_row(id)
        if row is None:
            return False
        self._alive[row] = False
        self._dead += 1
        self._maybe_merge()
        return True

    def get(self, id: str) -> int | None:
        pos = self._d_pos.get(id)
        if pos is not None:
            return int(self._d_hashes[pos])
        row = self._base_row(id) if isinstance(id, str) else None
        return None if row is None else int(self._hashes[row])

    def within(self, hash: int, max_distance: int) -> list[Match]:
        query, radius = check_hash(hash), check_distance(max_distance)
        if len(self._hashes) - self._dead:
            rows, dist = self._base_within(query, radius)
        else:
            rows, dist = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        delta_dist = popcount_xor(self._d_hashes[: len(self._d_ids)], query)
        delta_rows = np.flatnonzero(delta_dist <= radius)
        return self._finish(rows, dist, delta_rows, delta_dist[delta_rows], None)

    def nearest(self, hash: int, k: int) -> list[Match]:
        query, k = check_hash(hash), check_k(k)
        if k == 0 or len(self) == 0:
            return []
        # The first k of base + delta are among the first k of each part, because both
        # parts are ranked by (distance, id).
        if len(self._hashes) - self._dead:
            rows, dist = self._base_nearest(query, k)
        else:
            rows, dist = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        delta_dist = popcount_xor(self._d_hashes[: len(self._d_ids)], query)
        if len(delta_dist) > k:
            kth = kth_smallest(delta_dist, k)
            delta_rows = np.flatnonzero(delta_dist <= kth)
        else:
            delta_rows = np.arange(len(delta_dist))
        return self._finish(rows, dist, delta_rows, delta_dist[delta_rows], k)

    def _finish(self, rows: np.ndarray, dist: np.ndarray, delta_rows: np.ndarray,
                delta_dist: np.ndarray, k: int | None) -> list[Match]:
        """Matches sorted by (distance, id); base rows are in id order, so sort by (d, row)."""
        order = np.lexsort((rows, dist))
        if k is not None:
            order = order[:k]
        ids = self._ids[rows[order]].tolist()
        base = [Match(i.decode("utf-8"), d) for i, d in zip(ids, dist[order].tolist(), strict=True)]
        if not len(delta_rows):
            return base
        delta = [Match(self._d_ids[r], d) for r, d in zip(delta_rows.tolist(), delta_dist.tolist(),
                                                            strict=True)]
        merged = sorted(base + delta, key=lambda m: (m.distance, m.id))
        return merged if k is None else merged[:k]

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        ids, hashes = self._ids[self._alive], self._hashes[self._alive]
        n_delta = len(self._d_ids)
        if not n_delta:
            return ids, hashes
        return (np.concatenate([ids, as_id_bytes(self._d_ids)]),
                np.concatenate([hashes, self._d_hashes[:n_delta]]))

    def memory_bytes(self) -> int:
        delta = (self._d_hashes.nbytes + sys.getsizeof(self._d_ids) + sys.getsizeof(self._d_pos)
                 + sum(sys.getsizeof(i) for i in self._d_ids))
        return (self._ids.nbytes + self._hashes.nbytes + self._alive.nbytes + delta
                + self._structure_bytes())
