"""The `vptree` PyPI package (1.3) behind our interface: the baseline the design started from.

Kept to measure, not to serve. What the wrapper has to compensate for:

- `get_all_in_range(q, r)` keeps only points with d < r (strict), not d <= r: we ask for
  r + 1 and, distances being integers, that is exactly d <= r;
- `get_n_nearest_neighbors` prunes with the current k-th distance while its list is not
  yet full, so it is not guaranteed exact; we only use the k-th distance it returns as an
  upper bound D (its answers are real points), then ask the exact range query for d <= D
  and rank those ourselves, ties by id;
- the tree holds points, not ids, and recurses once per point with ties all going to one
  side: we index the *distinct* hashes (duplicates would make the recursion linear) and
  map each back to its rows;
- it cannot add or remove: the store's delta and tombstones cover that and merges rebuild.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import vptree

from index.engine import HASH_BITS
from index.store import StoreIndex, expand_ranges


def _hamming(a: Any, b: Any) -> int:
    return (int(a) ^ int(b)).bit_count()


class VPTreePackageIndex(StoreIndex):
    """The `vptree` package over the distinct hashes of the store's frozen base."""

    name = "vptree_pkg"

    def _build(self) -> None:
        self._unique, inverse = np.unique(self._hashes, return_inverse=True)
        # rows grouped by distinct hash: rows of unique value u are _grouped[_first[u]:_first[u+1]]
        self._grouped = np.argsort(inverse, kind="stable").astype(np.uint32)
        self._first = np.zeros(len(self._unique) + 1, dtype=np.int64)
        np.cumsum(np.bincount(inverse, minlength=len(self._unique)), out=self._first[1:])
        self._tree: vptree.VPTree | None = None
        if len(self._unique):
            limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(limit, 20_000))
            try:
                self._tree = vptree.VPTree(self._unique, _hamming)
            finally:
                sys.setrecursionlimit(limit)

    def _structure_bytes(self) -> int:
        size = self._unique.nbytes + self._grouped.nbytes + self._first.nbytes
        stack = [self._tree]
        while stack:  # every node is a Python object with a __dict__ and a numpy scalar
            node = stack.pop()
            if node is None:
                continue
            size += sys.getsizeof(node) + sys.getsizeof(node.__dict__) + sys.getsizeof(node.vp)
            stack.extend((node.left, node.right))
        return size

    def _rows_of(self, values: np.ndarray) -> np.ndarray:
        positions = np.searchsorted(self._unique, values)
        rows = self._grouped[expand_ranges(self._first[positions], self._first[positions + 1])]
        rows = rows.astype(np.int64)
        return rows[self._alive[rows]] if self._dead else rows

    def _range(self, query: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._tree is not None
        found = self._tree.get_all_in_range(np.uint64(query), radius + 1)  # strict <: see above
        values = np.array([point for _, point in found], dtype=np.uint64)
        rows = self._rows_of(values)
        dist = np.bitwise_count(self._hashes[rows] ^ np.uint64(query))
        return rows, dist

    def _base_within(self, query: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        return self._range(query, radius)

    def _base_nearest(self, query: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._tree is not None
        n_points = min(k, len(self._unique))
        found = self._tree.get_n_nearest_neighbors(np.uint64(query), n_points)
        bound = max(int(d) for d, _ in found) if found else HASH_BITS
        rows, dist = self._range(query, bound)
        if len(rows) < k and len(rows) < len(self._hashes) - self._dead:
            return self._brute_nearest(query, k)  # tombstones thinned the candidates out
        return rows, dist
