"""An index that keeps answering while its engine rebuilds: an immutable base plus write layers.

MIH (and the VP-tree) rebuild their whole structure when their add buffer fills, which
takes seconds at 10M hashes. Doing that inside `add()` on the event loop would stall
every query for those seconds, and engines are not thread-safe, so a rebuild cannot run
in a thread on the live engine either. So the engine here is never written after it is
built: it is the *base*, and writes go to small layers on top of it:

- `top`: writes since the last fold — adds in a brute-force index (scanned by every
  query, bounded by the fold threshold) and the ids those writes *hide* below (removed or
  replaced ids that the base or the frozen layer still hold);
- `frozen`: during a fold, the former top, read-only while a new base (old base + frozen)
  is built from copies in a worker thread; queries read base + frozen + top meanwhile.

When the new base is ready it replaces the old one and `frozen` goes away (on the event
loop, so queries never see half a swap). Everything the worker thread touches (old base,
frozen layer) is immutable while it runs, which is what makes the thread safe without a
lock on the query path.

Hidden sets only hold ids present below, so their size is the number of removes and
replacements since the last fold (not of adds); `nearest` over-fetches by that much.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from imgkit.errors import BadRequest
from index.brute import BruteForceIndex
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
    make_index,
)

#: Fold when the top layer holds this many writes, scaled with the base like the store's delta.
FOLD_MIN, FOLD_MAX = 1024, 65536


class _Layer:
    """Writes since the layer below: adds, and the ids of the layers below they hide."""

    def __init__(self) -> None:
        self.adds = BruteForceIndex()
        self.hidden: set[str] = set()

    def __len__(self) -> int:
        return len(self.adds) + len(self.hidden)

    def copy(self) -> _Layer:
        layer = _Layer()
        ids, hashes = self.adds.items()
        layer.adds.add_many(ids, hashes)
        layer.hidden = set(self.hidden)
        return layer


def _without(ids: np.ndarray, hashes: np.ndarray, hidden: set[str]) -> tuple[np.ndarray, np.ndarray]:
    if not hidden or not len(ids):
        return ids, hashes
    keep = ~np.isin(ids, as_id_bytes(sorted(hidden)))
    return ids[keep], hashes[keep]


def visible_items(base: HashIndex, frozen: _Layer | None, top: _Layer) -> tuple[np.ndarray, np.ndarray]:
    """Every live (id, hash) of base + frozen + top; pure function of immutable inputs, so it
    may run in a worker thread (snapshots, folds)."""
    hidden_below = set(top.hidden) | (frozen.hidden if frozen else set())
    id_parts, hash_parts = [], []
    ids, hashes = _without(*base.items(), hidden_below)
    id_parts.append(ids)
    hash_parts.append(hashes)
    if frozen is not None:
        ids, hashes = _without(*frozen.adds.items(), top.hidden)
        id_parts.append(ids)
        hash_parts.append(hashes)
    ids, hashes = top.adds.items()
    id_parts.append(ids)
    hash_parts.append(hashes)
    return (np.concatenate([np.zeros(0, dtype="S1"), *id_parts]),
            np.concatenate([np.zeros(0, dtype=np.uint64), *hash_parts]))


class LiveIndex(HashIndex):
    """A `HashIndex` whose engine rebuilds off the query path (see the module docstring).

    Single-threaded like the engines: every method is called from one thread (the event
    loop); only the function returned by `begin_fold` runs elsewhere.
    """

    def __init__(self, engine: str = "mih", *, fold_at: int | None = None, **options: Any) -> None:
        self.engine = engine
        self.name = f"live-{engine}"
        self._options = options
        self._fold_at = fold_at
        self._base: HashIndex = make_index(engine, **options)
        self._frozen: _Layer | None = None
        self._top = _Layer()

    # --- folding ------------------------------------------------------------------------------

    @property
    def fold_threshold(self) -> int:
        if self._fold_at is not None:
            return max(1, self._fold_at)
        return min(max(len(self._base) // 8, FOLD_MIN), FOLD_MAX)

    @property
    def base_size(self) -> int:
        return len(self._base)

    @property
    def folding(self) -> bool:
        return self._frozen is not None

    def needs_fold(self) -> bool:
        return self._frozen is None and len(self._top) >= self.fold_threshold

    def begin_fold(self) -> Callable[[], HashIndex]:
        """Freeze the top layer; return the builder of the new base (safe in a worker thread)."""
        if self._frozen is not None:
            raise RuntimeError("a fold is already in progress")
        base, frozen = self._base, self._top
        self._frozen, self._top = frozen, _Layer()
        engine, options = self.engine, self._options

        def build() -> HashIndex:
            ids, hashes = visible_items(base, None, frozen)
            fresh = make_index(engine, **options)
            fresh.add_many(ids, hashes)
            return fresh

        return build

    def end_fold(self, new_base: HashIndex) -> None:
        """Publish the base built by `begin_fold`'s builder (on the query thread)."""
        self._base, self._frozen = new_base, None

    def abort_fold(self) -> None:
        """The builder failed: put the frozen writes back under the top layer."""
        frozen = self._frozen
        if frozen is None:
            return
        top, self._top, self._frozen = self._top, frozen, None
        for id in top.hidden:  # replay the newer layer over the older one
            self.remove(id)
        ids, hashes = top.adds.items()
        for i, h in zip(ids.tolist(), hashes.tolist(), strict=True):
            self.add(i.decode("utf-8"), h)

    def fold(self) -> None:
        """Fold synchronously (small indexes, where a rebuild takes milliseconds)."""
        self.end_fold(self.begin_fold()())

    def snapshot_view(self) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        """Capture the contents now (copying only the small top layer); the returned function
        computes the arrays later, in any thread."""
        base, frozen, top = self._base, self._frozen, self._top.copy()
        return lambda: visible_items(base, frozen, top)

    # --- reads and writes ------------------------------------------------------------------------

    def _below(self, id: str) -> int | None:
        """The hash of `id` in the layers under the top one."""
        frozen = self._frozen
        if frozen is not None:
            found = frozen.adds.get(id)
            if found is not None:
                return found
            if id in frozen.hidden:
                return None
        return self._base.get(id)

    def add(self, id: str, hash: int) -> None:
        id, hash = check_id(id), check_hash(hash)
        top = self._top
        if id not in top.hidden and self._below(id) is not None:
            top.hidden.add(id)
        top.adds.add(id, hash)

    def add_many(self, ids: IdsLike, hashes: np.ndarray) -> None:
        id_bytes, hash_array = as_id_bytes(ids), as_hash_array(hashes)
        if len(id_bytes) != len(hash_array):
            raise BadRequest("ids and hashes differ in length", ids=len(id_bytes), hashes=len(hash_array))
        if not len(id_bytes):
            return
        if len(self) == 0 and self._frozen is None:  # bulk build (a snapshot, a rebuild)
            fresh = make_index(self.engine, **self._options)
            fresh.add_many(id_bytes, hash_array)
            self._base, self._top = fresh, _Layer()
            return
        for i, h in zip(id_bytes.tolist(), hash_array.tolist(), strict=True):
            self.add(i.decode("utf-8"), h)

    def remove(self, id: str) -> bool:
        if not isinstance(id, str):
            return False
        top = self._top
        present = top.adds.remove(id)
        if id in top.hidden:
            return present
        if self._below(id) is not None:
            top.hidden.add(id)
            return True
        return present

    def get(self, id: str) -> int | None:
        top = self._top
        found = top.adds.get(id)
        if found is not None or id in top.hidden:
            return found
        return self._below(id)

    def __len__(self) -> int:
        frozen = self._frozen
        below = len(self._base) + (len(frozen.adds) - len(frozen.hidden) if frozen else 0)
        return below - len(self._top.hidden) + len(self._top.adds)

    def _layers(self) -> list[tuple[HashIndex, set[str]]]:
        """(index, ids to drop from its answers), newest first."""
        top, frozen = self._top, self._frozen
        layers: list[tuple[HashIndex, set[str]]] = [(top.adds, set())]
        if frozen is None:
            layers.append((self._base, top.hidden))
        else:
            layers.append((frozen.adds, top.hidden))
            layers.append((self._base, top.hidden | frozen.hidden))
        return layers

    def within(self, hash: int, max_distance: int) -> list[Match]:
        query, radius = check_hash(hash), check_distance(max_distance)
        matches: list[Match] = []
        for index, hidden in self._layers():
            found = index.within(query, radius)
            matches.extend([m for m in found if m.id not in hidden] if hidden else found)
        matches.sort(key=lambda m: (m.distance, m.id))
        return matches

    def nearest(self, hash: int, k: int) -> list[Match]:
        query, k = check_hash(hash), check_k(k)
        if k == 0:
            return []
        matches: list[Match] = []
        for index, hidden in self._layers():
            # hidden ids may take places in this layer's first k: ask for that many more
            found = index.nearest(query, k + len(hidden))
            matches.extend(m for m in found if m.id not in hidden)
        matches.sort(key=lambda m: (m.distance, m.id))
        return matches[:k]

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        return visible_items(self._base, self._frozen, self._top)

    def memory_bytes(self) -> int:
        frozen = self._frozen
        layers = [self._top] + ([frozen] if frozen else [])
        return self._base.memory_bytes() + sum(
            layer.adds.memory_bytes() + sys.getsizeof(layer.hidden) for layer in layers)


def distance(a: int, b: int) -> int:
    """Hamming distance of two 64-bit hashes."""
    return (a ^ b).bit_count()


__all__ = ["LiveIndex", "distance", "visible_items"]
