"""The one interface every near-duplicate engine implements, and the helpers they share.

Perceptual hashes are unsigned 64-bit integers and similarity is Hamming distance.
An engine instance holds the hashes of one (account, hash kind); engines are chosen by
measurement (`tests/bench/bench_index.py`), so they must be interchangeable: same
answers, same order, same errors. The brute-force engine is the oracle the others are
property-tested against.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from imgkit.errors import BadRequest, ConfigError

HASH_BITS = 64
MAX_HASH = (1 << HASH_BITS) - 1

#: Ids as handed to `add_many`: a sequence of str, or a numpy array of str or UTF-8 bytes
#: (bytes arrays avoid creating millions of Python str objects in bulk builds).
IdsLike = Sequence[str] | np.ndarray


class Match(NamedTuple):
    """One answer: an id and its Hamming distance to the query.

    A NamedTuple rather than a dataclass because queries may return many thousands of
    them and tuple creation is the cheapest object Python has.
    """

    id: str
    distance: int


class HashIndex(ABC):
    """Exact Hamming-distance search over (id, 64-bit hash) pairs.

    Every answer is sorted by (distance, id) so that all engines agree byte for byte,
    which is what lets the tests compare them with the oracle and lets the API merge
    the answers of several shards deterministically.
    """

    #: short engine name, as in `IMGKIT_INDEX_ENGINE`
    name: str = ""

    @abstractmethod
    def add(self, id: str, hash: int) -> None:
        """Insert `id` with `hash`; re-adding an existing id replaces its hash."""

    @abstractmethod
    def add_many(self, ids: IdsLike, hashes: np.ndarray) -> None:
        """Bulk insert (a rebuild, a snapshot load); later duplicates of an id win."""

    @abstractmethod
    def remove(self, id: str) -> bool:
        """Remove `id`; False when it was not there (removes are idempotent)."""

    @abstractmethod
    def get(self, id: str) -> int | None:
        """The hash stored for `id`, or None (the API asks "similar to image X")."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of live ids."""

    @abstractmethod
    def within(self, hash: int, max_distance: int) -> list[Match]:
        """Every id whose hash is at Hamming distance <= max_distance (inclusive)."""

    @abstractmethod
    def nearest(self, hash: int, k: int) -> list[Match]:
        """The k closest ids; ties on distance are broken by id."""

    @abstractmethod
    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """All live (ids as UTF-8 bytes array, hashes as uint64 array), for snapshots."""

    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes held by this index, ids included (numpy nbytes + Python object sizes)."""

    def __contains__(self, id: object) -> bool:
        return isinstance(id, str) and self.get(id) is not None


# --- validation shared by engines ------------------------------------------------------------


def check_hash(value: Any) -> int:
    """Return `value` as a Python int in [0, 2^64), or raise BadRequest.

    Accepting numpy integers too, because hashes often come straight out of arrays;
    rejecting negatives, because a signed reinterpretation of a hash is a different hash
    and silently accepting it would make near-duplicates invisible.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise BadRequest("a hash must be an integer", hash=value)
    result = int(value)
    if not 0 <= result <= MAX_HASH:
        raise BadRequest("a hash must be an unsigned 64-bit integer", hash=result)
    return result


def check_id(value: Any) -> str:
    """Ids are non-empty str without NUL (stored as fixed-width bytes, which strip NULs)."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise BadRequest("an id must be a non-empty string without NUL characters", id=value)
    return value


def check_distance(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise BadRequest("max_distance must be a non-negative integer", max_distance=value)
    return min(int(value), HASH_BITS)


def check_k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise BadRequest("k must be a non-negative integer", k=value)
    return int(value)


def as_hash_array(hashes: Any) -> np.ndarray:
    """Hashes for bulk calls as a contiguous uint64 array (signed input must be non-negative)."""
    array = np.asarray(hashes)
    if array.ndim != 1:
        raise BadRequest("hashes must be a one-dimensional array", shape=array.shape)
    if array.dtype == np.uint64:
        return np.ascontiguousarray(array)
    if array.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if array.dtype.kind == "O":
        return np.array([check_hash(h) for h in array.tolist()], dtype=np.uint64)
    if array.dtype.kind not in "iu":
        raise BadRequest("hashes must be unsigned 64-bit integers", dtype=str(array.dtype))
    if array.dtype.kind == "i" and bool((array < 0).any()):
        raise BadRequest("hashes must be unsigned 64-bit integers (got negative values)")
    return array.astype(np.uint64)


def as_id_bytes(ids: IdsLike) -> np.ndarray:
    """Ids as a numpy fixed-width bytes array (UTF-8), the compact form engines store.

    UTF-8 byte order equals code-point order, so sorting these bytes sorts ids exactly as
    Python sorts the str: the (distance, id) order stays the same in every engine.
    """
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise BadRequest("ids must be one-dimensional", shape=ids.shape)
        if ids.dtype.kind == "S":
            array = ids
        elif ids.dtype.kind == "U":
            array = np.char.encode(ids, "utf-8")
        else:
            return as_id_bytes([str(x) for x in ids.tolist()])
        if array.size and bool((array == b"").any()):
            raise BadRequest("an id must be a non-empty string")
        return array
    encoded = [check_id(i).encode("utf-8") for i in ids]
    if not encoded:
        return np.zeros(0, dtype="S1")
    return np.array(encoded, dtype=bytes)


def popcount_xor(hashes: np.ndarray, query: int) -> np.ndarray:
    """Hamming distances of every hash to `query` (uint8), one vectorised pass."""
    return np.bitwise_count(hashes ^ np.uint64(query))


def kth_smallest(dist: np.ndarray, k: int) -> int:
    """The k-th smallest (1-based) of small non-negative integer distances.

    A 256-bin histogram: a third of `np.partition`'s time on millions of uint8.
    """
    cumulative = np.cumsum(np.bincount(dist, minlength=1))
    return int(np.searchsorted(cumulative, k))


def sort_matches(pairs: Iterable[tuple[int, str]]) -> list[Match]:
    """(distance, id) pairs as Matches sorted by (distance, id)."""
    return [Match(i, int(d)) for d, i in sorted(pairs)]


# --- the engine registry -----------------------------------------------------------------------

ENGINE_NAMES = ("mih", "vptree", "brute", "vptree_pkg")


def make_index(engine: str, **options: Any) -> HashIndex:
    """A new empty index of the named engine (`IMGKIT_INDEX_ENGINE`).

    Imports lazily so that the service only loads the engine it runs.
    """
    if engine == "brute":
        from index.brute import BruteForceIndex

        return BruteForceIndex(**options)
    if engine == "mih":
        from index.mih import MultiIndexHashing

        return MultiIndexHashing(**options)
    if engine == "vptree":
        from index.vp import VPTreeIndex

        return VPTreeIndex(**options)
    if engine == "vptree_pkg":
        from index.vptree_pkg import VPTreePackageIndex

        return VPTreePackageIndex(**options)
    raise ConfigError(f"unknown index engine {engine!r}; choose from {', '.join(ENGINE_NAMES)}")
