"""Multi-index hashing (Norouzi, Punjani & Fleet, "Fast search in Hamming space with
multi-index hashing", CVPR 2012): exact radius and k-nearest search.

The 64 bits are cut into m substrings. If two hashes are within distance r = q*m + a
(0 <= a < m), then by pigeonhole one of the first a+1 substrings differs by at most q bits
or one of the others by at most q-1 (else the total would be >= (a+1)(q+1) + (m-a-1)q
= r+1). So a query probes, in each substring's table, every bucket within that small
radius of the query's substring, and verifies the candidates by a full popcount.

Each table is CSR-shaped, no Python dict: `rows[t]` holds every base row sorted by its
substring value and `offsets[t]` (2^b + 1 uint32) says where each value's bucket starts,
so a bucket is a slice and hundreds of buckets are gathered in one vectorised step.
With m chosen so that 2^b is about n/2 (b ~ log2(n) - 1, as the paper recommends) a
table costs 4 bytes per hash plus ~2 for its offsets: 10M hashes take m = 3 (22/21/21-bit
substrings), 1M take m = 4 (16 bits).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from index.engine import HASH_BITS, popcount_xor
from index.store import StoreIndex, expand_ranges

#: Beyond this per-table radius the probe lists get long; the engine scans instead.
MAX_TABLE_RADIUS = 8
MIN_SUBSTRINGS, MAX_SUBSTRINGS = 3, 16
#: Fixed cost of one probe pass (a dozen numpy calls) in units of hashes scanned, for the
#: probe-or-scan decisions; a verified candidate (a random gather) counts as 4 units.
STEP_COST = 16384


def choose_substrings(n: int) -> int:
    """m for n hashes: substrings of ~log2(n) - 1 bits (>= 4), between 3 and 16 of them.

    Fewer, longer substrings mean fewer candidates per probe but 2^b offsets per table;
    b ~ log2(n) - 1 keeps the offsets under ~4 bytes per hash while buckets stay small.
    The radius does not enter: it varies per query while the tables are built once.
    """
    bits = max(int(math.log2(max(n, 2))) - 1, 4)
    return min(max(math.ceil(HASH_BITS / bits), MIN_SUBSTRINGS), MAX_SUBSTRINGS)


def substring_layout(m: int) -> list[tuple[int, int]]:
    """(shift, width) of each substring; the wider ones first (they take the larger radius)."""
    base, extra = divmod(HASH_BITS, m)
    widths = [base + 1] * extra + [base] * (m - extra)
    layout, shift = [], 0
    for width in widths:
        layout.append((shift, width))
        shift += width
    return layout


@lru_cache(maxsize=32)
def _masks_by_weight(width: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """All `width`-bit values of popcount <= MAX_TABLE_RADIUS, sorted by popcount, and the
    start of each weight in that array (so weight s is masks[start[s]:start[s + 1]]).

    Computed once per width (a 2^width scan, ~20 ms for 22 bits) and kept: ~2.4 MB for
    22 bits, shared by every index in the process.
    """
    values = np.arange(1 << width, dtype=np.uint32)
    weights = np.bitwise_count(values)
    keep = weights <= MAX_TABLE_RADIUS
    values, weights = values[keep], weights[keep]
    order = np.argsort(weights, kind="stable")
    starts = [0]
    for s in range(MAX_TABLE_RADIUS + 1):
        starts.append(starts[-1] + math.comb(width, s))
    return values[order], tuple(starts)


class MultiIndexHashing(StoreIndex):
    """Exact MIH over a frozen base, plus the store's brute-forced delta and tombstones."""

    name = "mih"

    def __init__(self, *, substrings: int | None = None, delta_limit: int | None = None,
                 allow_scan: bool = True) -> None:
        """`substrings` forces m (else chosen from the size at each rebuild); `allow_scan=False`
        keeps probing even where a scan would be cheaper (tests use it to exercise the tables
        on small indexes)."""
        if substrings is not None and not MIN_SUBSTRINGS <= substrings <= MAX_SUBSTRINGS:
            raise ValueError(f"substrings must be between {MIN_SUBSTRINGS} and {MAX_SUBSTRINGS}")
        self._substrings_option = substrings
        self._allow_scan = allow_scan
        self._layout: list[tuple[int, int]] = []
        # all m tables in two flat arrays, so that one query probes every table in one pass:
        # table t's rows are _rows[t*n:(t+1)*n], its offsets start at _bucket_base[t] (and
        # already include t*n)
        self._rows = np.zeros(0, dtype=np.uint32)
        self._offsets = np.zeros(1, dtype=np.uint32)
        self._bucket_base = np.zeros(0, dtype=np.int64)
        self._shifts = np.zeros(0, dtype=np.uint64)
        self._widths = np.zeros(0, dtype=np.uint64)
        self._balls: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        super().__init__(delta_limit=delta_limit)

    @property
    def substrings(self) -> int:
        return len(self._layout)

    def _build(self) -> None:
        n = len(self._hashes)
        m = self._substrings_option or choose_substrings(n)
        self._layout = substring_layout(m)
        rows, offsets, bases, base = [], [], [], 0
        for t, (shift, width) in enumerate(self._layout):
            keys = ((self._hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.uint32)
            # a stable sort keeps rows ascending inside each bucket (cheap: radix for <= 16 bits)
            rows.append(np.argsort(keys, kind="stable").astype(np.uint32))
            table_offsets = np.empty((1 << width) + 1, dtype=np.uint32)
            table_offsets[0] = t * n
            np.cumsum(np.bincount(keys, minlength=1 << width), out=table_offsets[1:])
            table_offsets[1:] += np.uint32(t * n)
            offsets.append(table_offsets)
            bases.append(base)
            base += len(table_offsets)
        self._rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.uint32)
        self._offsets = np.concatenate(offsets)
        self._bucket_base = np.array(bases, dtype=np.int64)
        self._shifts = np.array([shift for shift, _ in self._layout], dtype=np.uint64)
        self._widths = np.array([(1 << width) - 1 for _, width in self._layout], dtype=np.uint64)
        self._balls = {}

    def _structure_bytes(self) -> int:
        return self._rows.nbytes + self._offsets.nbytes

    def _ball(self, lows: tuple[int, ...],
              highs: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks to XOR with each table's query substring (weights lows[t]..highs[t]), the
        table of each, and that table's bucket base; cached when small (most queries reuse
        a handful of radii)."""
        key = lows + highs
        cached = self._balls.get(key)
        if cached is not None:
            return cached
        masks, tables = [], []
        for t, ((_, width), lo, hi) in enumerate(zip(self._layout, lows, highs, strict=True)):
            if hi < lo or lo > width:
                continue
            by_weight, starts = _masks_by_weight(width)
            part = by_weight[starts[lo]: starts[min(hi, width) + 1]].astype(np.int64)
            masks.append(part)
            tables.append(np.full(len(part), t, dtype=np.int64))
        mask = np.concatenate([np.zeros(0, dtype=np.int64), *masks])
        table = np.concatenate([np.zeros(0, dtype=np.int64), *tables])
        result = (mask, table, self._bucket_base[table])
        if len(mask) <= 65536:
            self._balls[key] = result
        return result

    def _probe_ball(self, query: int, lows: tuple[int, ...], highs: tuple[int, ...]) -> np.ndarray:
        """Base rows in every bucket whose substring differs from the query's in table t by
        lows[t]..highs[t] bits: one gather over all tables."""
        mask, table, bucket_base = self._ball(lows, highs)
        subs = ((np.uint64(query) >> self._shifts) & self._widths).astype(np.int64)
        buckets = (mask ^ subs[table]) + bucket_base
        return self._rows[expand_ranges(self._offsets[buckets], self._offsets[buckets + 1])]

    def _probe(self, table: int, query: int, lo: int, hi: int) -> np.ndarray:
        """Base rows of one table's buckets at lo..hi bits from the query's substring."""
        m = len(self._layout)
        lows = tuple(lo if t == table else 1 for t in range(m))
        highs = tuple(hi if t == table else 0 for t in range(m))
        return self._probe_ball(query, lows, highs)

    def _verify(self, candidates: np.ndarray, query: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        dist = popcount_xor(self._hashes[candidates], query)
        keep = dist <= radius
        if self._dead:
            keep &= self._alive[candidates]
        # a row found through several substrings appears once: unique on (row) and since the
        # distance is a function of the row, one unique on the packed key does both
        packed = np.unique((dist[keep].astype(np.uint64) << np.uint64(32)) | candidates[keep])
        return (packed & np.uint64(0xFFFFFFFF)).astype(np.int64), (packed >> np.uint64(32)).astype(np.uint8)

    def _table_radii(self, radius: int) -> list[int]:
        m = len(self._layout)
        q, a = divmod(radius, m)
        return [q if t <= a else q - 1 for t in range(m)]

    def _probe_cost(self, radii: list[int]) -> int:
        """Buckets a probe would read, to compare with a scan."""
        return sum(sum(math.comb(w, s) for s in range(min(r, w) + 1))
                   for (_, w), r in zip(self._layout, radii, strict=True) if r >= 0)

    def _scan_is_cheaper(self, radii: list[int]) -> bool:
        n = len(self._hashes)
        if max(radii) > MAX_TABLE_RADIUS:
            return True
        if not self._allow_scan:
            return False
        expected = sum(math.comb(w, s) * n / (1 << w) for (_, w), r in zip(self._layout, radii, strict=True)
                       for s in range(min(r, w) + 1) if r >= 0)
        # a candidate costs a random gather; a scanned hash a sequential read (~4x cheaper)
        return expected * 4 + STEP_COST >= n or self._probe_cost(radii) >= n

    def _base_within(self, query: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        radii = self._table_radii(radius)
        if self._scan_is_cheaper(radii):
            return self._brute_within(query, radius)
        candidates = self._probe_ball(query, (0,) * len(radii), tuple(radii))
        return self._verify(candidates, query, radius)

    def _base_nearest(self, query: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Incremental search: probe substring radius s = 0, 1, ... one table at a time.

        After table t at radius s every hash within s*m + t of the query has been seen
        (the same pigeonhole as `within`), so once k live rows are known within that
        covered radius they contain the k nearest, ties included. A row is kept only at
        the step that discovers it first (no earlier step's substring matches it), so rows
        never repeat and no `unique` pass is needed.
        """
        m = len(self._layout)
        q = np.uint64(query)
        found_rows: list[np.ndarray] = []
        found_dist: list[np.ndarray] = []
        histogram = np.zeros(HASH_BITS + 1, dtype=np.int64)
        seen_candidates = steps = 0
        n = len(self._hashes)
        for s in range(MAX_TABLE_RADIUS + 1):
            for t in range(m):
                covered = s * m + t
                width = self._layout[t][1]
                expected = math.comb(width, s) * n / (1 << width)
                steps += 1
                if self._allow_scan and (seen_candidates + expected) * 4 + steps * STEP_COST >= n:
                    return self._brute_nearest(query, k)
                candidates = self._probe(t, query, s, s)
                seen_candidates += len(candidates)
                if len(candidates):
                    xor = self._hashes[candidates] ^ q
                    first = self._alive[candidates] if self._dead else np.ones(len(candidates), dtype=bool)
                    for other, (shift, width) in enumerate(self._layout):
                        if other == t:
                            continue
                        sub = np.bitwise_count((xor >> np.uint64(shift)) & np.uint64((1 << width) - 1))
                        first &= (sub > s) if other < t else (sub >= s)
                    dist = np.bitwise_count(xor[first])
                    found_rows.append(candidates[first])
                    found_dist.append(dist)
                    histogram += np.bincount(dist, minlength=HASH_BITS + 1)
                if int(histogram[: covered + 1].sum()) >= k or covered >= HASH_BITS:
                    rows = np.concatenate([np.zeros(0, np.int64), *found_rows]).astype(np.int64)
                    dist = np.concatenate([np.zeros(0, np.uint8), *found_dist])
                    keep = dist <= covered
                    return rows[keep], dist[keep]
        return self._brute_nearest(query, k)
