"""A vectorised vantage-point tree of our own, exact.

The `vptree` package walks one Python object per point, calling a Python distance
function at every node. Here the tree is a handful of numpy arrays (vantage hash, median
radius, children, leaf ranges) over a copy of the hashes permuted so that every leaf is
a contiguous slice, and leaves are large (hundreds of hashes) so that the work happens in
batch popcounts:

- a query walks the tree level by level, computing the distance to every vantage point
  of the frontier in one numpy call (not one Python call per node);
- the leaves it reaches are verified together in one gather + XOR + popcount.

Node n splits its hashes at `mu[n]` = the median distance to its vantage hash: inner
(left) child < mu, outer (right) >= mu. By the triangle inequality a hash within r of
the query can be in the inner child only if d(q, vp) - r < mu, and in the outer one only
if d(q, vp) + r >= mu.
"""

from __future__ import annotations

import numpy as np

from index.engine import HASH_BITS, kth_smallest, popcount_xor
from index.store import StoreIndex, expand_ranges

DEFAULT_LEAF_SIZE = 512


class VPTreeIndex(StoreIndex):
    """Exact VP-tree over the store's frozen base, plus its brute-forced delta."""

    name = "vptree"

    def __init__(self, *, leaf_size: int = DEFAULT_LEAF_SIZE, delta_limit: int | None = None,
                 seed: int = 0) -> None:
        if leaf_size < 1:
            raise ValueError("leaf_size must be positive")
        self._leaf_size = leaf_size
        self._seed = seed
        super().__init__(delta_limit=delta_limit)

    def _build(self) -> None:
        n = len(self._hashes)
        tree_hashes = self._hashes.copy()
        tree_rows = np.arange(n, dtype=np.uint32)
        vp: list[int] = []
        mu: list[int] = []
        left: list[int] = []
        right: list[int] = []
        start: list[int] = []
        end: list[int] = []

        def new_node(lo: int, hi: int) -> int:
            for column, value in ((vp, 0), (mu, 0), (left, -1), (right, -1), (start, lo), (end, hi)):
                column.append(value)
            return len(vp) - 1

        rng = np.random.default_rng(self._seed)
        stack = [new_node(0, n)]
        while stack:
            node = stack.pop()
            lo, hi = start[node], end[node]
            if hi - lo <= self._leaf_size:
                continue
            segment = tree_hashes[lo:hi]
            vantage = segment[int(rng.integers(hi - lo))]
            dist = np.bitwise_count(segment ^ vantage)
            middle = (hi - lo) // 2
            radius = kth_smallest(dist, middle + 1)
            inner = dist < radius
            n_inner = int(np.count_nonzero(inner))
            if n_inner == 0:
                # the median is the minimum (many ties): split off the minimum instead
                smallest = int(dist.min())
                if int(dist.max()) == smallest:
                    continue  # every hash equally far from the vantage point: stay a leaf
                radius = smallest + 1
                inner = dist < radius
                n_inner = int(np.count_nonzero(inner))
            rows = tree_rows[lo:hi]
            tree_hashes[lo:hi] = np.concatenate([segment[inner], segment[~inner]])
            tree_rows[lo:hi] = np.concatenate([rows[inner], rows[~inner]])
            vp[node], mu[node] = int(vantage), radius
            left[node] = new_node(lo, lo + n_inner)
            right[node] = new_node(lo + n_inner, hi)
            stack.extend((left[node], right[node]))

        self._tree_hashes, self._tree_rows = tree_hashes, tree_rows
        self._vp = np.array(vp, dtype=np.uint64)
        self._mu = np.array(mu, dtype=np.int16)
        self._left = np.array(left, dtype=np.int32)
        self._right = np.array(right, dtype=np.int32)
        self._start = np.array(start, dtype=np.int64)
        self._end = np.array(end, dtype=np.int64)

    def _structure_bytes(self) -> int:
        arrays = (self._tree_hashes, self._tree_rows, self._vp, self._mu, self._left, self._right,
                  self._start, self._end)
        return sum(a.nbytes for a in arrays)

    def _leaves_within(self, query: int, radius: int) -> np.ndarray:
        """Leaves that may hold a hash within `radius`, one frontier (tree level) at a time."""
        frontier = np.zeros(1, dtype=np.int32)
        leaves = []
        q = np.uint64(query)
        while len(frontier):
            is_leaf = self._left[frontier] < 0
            leaves.append(frontier[is_leaf])
            inner = frontier[~is_leaf]
            if not len(inner):
                break
            dist = np.bitwise_count(self._vp[inner] ^ q).astype(np.int16)
            mu = self._mu[inner]
            frontier = np.concatenate([self._left[inner][dist - radius < mu],
                                       self._right[inner][dist + radius >= mu]])
        return np.concatenate(leaves)

    def _base_within(self, query: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        leaves = self._leaves_within(query, radius)
        positions = expand_ranges(self._start[leaves], self._end[leaves])
        dist = popcount_xor(self._tree_hashes[positions], query)
        keep = dist <= radius
        rows = self._tree_rows[positions[keep]].astype(np.int64)
        dist = dist[keep]
        if self._dead:
            alive = self._alive[rows]
            rows, dist = rows[alive], dist[alive]
        return rows, dist

    def _base_nearest(self, query: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Bound the k-th distance by the leaf the query falls into, then search that radius."""
        node = 0
        while self._left[node] >= 0:
            d = int(query ^ int(self._vp[node])).bit_count()
            node = int(self._left[node]) if d < self._mu[node] else int(self._right[node])
        lo, hi = int(self._start[node]), int(self._end[node])
        dist = popcount_xor(self._tree_hashes[lo:hi], query)
        if self._dead:
            dist = dist[self._alive[self._tree_rows[lo:hi]]]
        bound = kth_smallest(dist, k) if len(dist) >= k else HASH_BITS
        if bound >= HASH_BITS // 2:
            return self._brute_nearest(query, k)
        return self._base_within(query, bound)
