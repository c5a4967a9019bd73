"""Every near-duplicate engine answers exactly what a scan answers, in the same order.

Property tests drive each engine and a plain dict model through the same interleaved
adds (re-adds with new hashes included), bulk adds and removes, on random and on
clustered hashes (a few centres with small bit flips, like near-duplicate photo sets),
and compare `within(d)` for every d in 0..16 and `nearest(k)` with the model. Engines
run with tiny delta limits and leaves so that merges, tombstones and deep trees happen
on small inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgkit.errors import BadRequest, ConfigError
from index.brute import BruteForceIndex
from index.engine import MAX_HASH, HashIndex, Match, kth_smallest, make_index
from index.mih import MultiIndexHashing, choose_substrings, substring_layout
from index.registry import IndexSet
from index.store import expand_ranges
from index.vp import VPTreeIndex
from index.vptree_pkg import VPTreePackageIndex

FACTORIES: dict[str, Callable[[], HashIndex]] = {
    "brute": BruteForceIndex,
    "mih": lambda: MultiIndexHashing(allow_scan=False, delta_limit=6),
    "mih_m5": lambda: MultiIndexHashing(substrings=5, allow_scan=False, delta_limit=3),
    "mih_default": MultiIndexHashing,
    "vptree": lambda: VPTreeIndex(leaf_size=2, delta_limit=6),
    "vptree_default": VPTreeIndex,
    "vptree_pkg": lambda: VPTreePackageIndex(delta_limit=6),
}

ID_POOL = [f"img_{i:02d}" for i in range(24)] + ["é", "img_", "Z"]


def expected_within(model: dict[str, int], query: int, radius: int) -> list[Match]:
    pairs = sorted(((h ^ query).bit_count(), i) for i, h in model.items())
    return [Match(i, d) for d, i in pairs if d <= radius]


def expected_nearest(model: dict[str, int], query: int, k: int) -> list[Match]:
    pairs = sorted(((h ^ query).bit_count(), i) for i, h in model.items())
    return [Match(i, d) for d, i in pairs[:k]]


def flip(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


@st.composite
def hash_source(draw: st.DrawFn) -> st.SearchStrategy[int]:
    """Random 64-bit hashes, or clustered ones: few centres, each hash a few flips away."""
    if draw(st.booleans()):
        return st.integers(0, MAX_HASH)
    centres = draw(st.lists(st.sampled_from([0, MAX_HASH]) | st.integers(0, MAX_HASH),
                            min_size=1, max_size=3))
    return st.builds(flip, st.sampled_from(centres), st.lists(st.integers(0, 63), max_size=5))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[tuple], list[int]]:
    hashes = draw(hash_source())
    ids = st.sampled_from(ID_POOL)
    op = st.one_of(
        st.tuples(st.just("add"), ids, hashes),
        st.tuples(st.just("add"), ids, hashes),
        st.tuples(st.just("remove"), ids),
        st.tuples(st.just("bulk"), st.lists(st.tuples(ids, hashes), max_size=12)),
    )
    ops = draw(st.lists(op, min_size=1, max_size=40))
    queries = draw(st.lists(hashes, min_size=1, max_size=2))
    return ops, queries


def check_all(engines: dict[str, HashIndex], model: dict[str, int], query: int,
              radii: range | list[int]) -> None:
    for radius in radii:
        expected = expected_within(model, query, radius)
        for name, engine in engines.items():
            assert engine.within(query, radius) == expected, (name, radius)
    for k in (1, 3, 10, 100):
        expected = expected_nearest(model, query, k)
        for name, engine in engines.items():
            assert engine.nearest(query, k) == expected, (name, k)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_engines_match_the_model(scenario: tuple[list[tuple], list[int]]) -> None:
    ops, queries = scenario
    engines = {name: factory() for name, factory in FACTORIES.items()}
    model: dict[str, int] = {}
    for step, op in enumerate(ops):
        if op[0] == "add":
            _, id, h = op
            model[id] = h
            for engine in engines.values():
                engine.add(id, h)
        elif op[0] == "remove":
            _, id = op
            present = id in model
            model.pop(id, None)
            for name, engine in engines.items():
                assert engine.remove(id) is present, name
        else:
            pairs = op[1]
            model.update(pairs)
            for engine in engines.values():
                engine.add_many([i for i, _ in pairs], np.array([h for _, h in pairs], dtype=np.uint64))
        for name, engine in engines.items():
            assert len(engine) == len(model), name
        if step % 7 == 3:  # interleaved queries, while deltas and tombstones are pending
            probe = model[min(model)] ^ 1 if model else queries[0]
            check_all(engines, model, probe, [0, 1, 2, 5, 8, 13, 16])
    for query in queries + [h ^ 0b1011 for h in list(model.values())[:2]]:
        check_all(engines, model, query, range(17))
    for name, engine in engines.items():
        ids, hashes = engine.items()
        got = {i.decode(): int(h) for i, h in zip(ids.tolist(), hashes.tolist(), strict=True)}
        assert got == model, name
        for id, h in model.items():
            assert engine.get(id) == h, name


@pytest.mark.parametrize("clustered", [False, True], ids=["random", "clustered"])
def test_engines_agree_on_thousands_of_hashes(clustered: bool) -> None:
    """Realistic bucket occupancy and tree depth, with every MIH layout we may choose."""
    rng = np.random.default_rng(7 + clustered)
    n = 6000
    if clustered:
        centres = rng.integers(0, MAX_HASH, 40, dtype=np.uint64, endpoint=True)
        hashes = centres[rng.integers(0, len(centres), n)]
        for _ in range(6):
            bits = rng.integers(0, 64, n).astype(np.uint64)
            hashes ^= (rng.random(n) < 0.5).astype(np.uint64) << bits
    else:
        hashes = rng.integers(0, MAX_HASH, n, dtype=np.uint64, endpoint=True)
    ids = [f"img_{i:05d}" for i in rng.permutation(n)]
    engines: dict[str, HashIndex] = {
        "brute": BruteForceIndex(),
        "mih3": MultiIndexHashing(substrings=3, allow_scan=False),
        "mih4": MultiIndexHashing(substrings=4, allow_scan=False),
        "mih5": MultiIndexHashing(substrings=5, allow_scan=False),
        "mih": MultiIndexHashing(),
        "vptree": VPTreeIndex(leaf_size=16),
        "vptree_pkg": VPTreePackageIndex(),
    }
    for engine in engines.values():
        engine.add_many(ids[:5000], hashes[:5000])
        for i in range(5000, n):  # the delta
            engine.add(ids[i], int(hashes[i]))
        for i in range(0, 900, 3):  # tombstones
            engine.remove(ids[i])
        for i in range(1, 300, 5):  # re-adds with a new hash
            engine.add(ids[i], int(hashes[i]) ^ 0b111)
    model = dict(zip(*engines["brute"].items(), strict=True))
    model = {i.decode(): int(h) for i, h in model.items()}
    for q in range(6):
        query = int(hashes[q * 997]) ^ (1 << q)
        check_all(engines, model, query, range(17))


# --- edge cases --------------------------------------------------------------------------------


@pytest.fixture(params=list(FACTORIES))
def engine(request: pytest.FixtureRequest) -> HashIndex:
    return FACTORIES[request.param]()


def test_empty_index(engine: HashIndex) -> None:
    assert len(engine) == 0
    assert engine.within(0, 64) == []
    assert engine.nearest(123, 5) == []
    assert engine.remove("img_1") is False
    assert engine.get("img_1") is None
    assert "img_1" not in engine
    ids, hashes = engine.items()
    assert len(ids) == len(hashes) == 0


def test_extreme_hashes_and_inclusive_radius(engine: HashIndex) -> None:
    engine.add("zero", 0)
    engine.add("ones", MAX_HASH)
    engine.add("one_bit", 1)
    assert engine.within(0, 0) == [Match("zero", 0)]
    assert engine.within(0, 1) == [Match("zero", 0), Match("one_bit", 1)]
    assert engine.within(0, 63) == [Match("zero", 0), Match("one_bit", 1)]
    assert engine.within(0, 64) == [Match("zero", 0), Match("one_bit", 1), Match("ones", 64)]
    assert engine.within(MAX_HASH, 0) == [Match("ones", 0)]
    assert engine.within(MAX_HASH, 200) == engine.within(MAX_HASH, 64)  # radius clamps at 64
    assert engine.nearest(MAX_HASH, 1) == [Match("ones", 0)]
    assert engine.nearest(MAX_HASH, 10) == [Match("ones", 0), Match("one_bit", 63), Match("zero", 64)]
    assert engine.get("ones") == MAX_HASH


def test_duplicate_hashes_rank_by_id(engine: HashIndex) -> None:
    engine.add_many(["c", "a", "b", "d"], np.array([5, 5, 5, 4], dtype=np.uint64))
    assert engine.within(5, 0) == [Match("a", 0), Match("b", 0), Match("c", 0)]
    assert engine.nearest(5, 2) == [Match("a", 0), Match("b", 0)]
    assert engine.nearest(4, 2) == [Match("d", 0), Match("a", 1)]
    assert engine.nearest(5, 0) == []


def test_readd_replaces_and_last_duplicate_wins(engine: HashIndex) -> None:
    engine.add_many(["x", "y", "x"], np.array([1, 2, 3], dtype=np.uint64))
    assert engine.get("x") == 3 and len(engine) == 2
    engine.add("x", 0xFF)
    assert engine.within(3, 0) == []
    assert engine.within(0xFF, 0) == [Match("x", 0)]
    assert engine.remove("x") is True and engine.remove("x") is False
    assert len(engine) == 1


def test_rejects_bad_input(engine: HashIndex) -> None:
    for bad_hash in (-1, MAX_HASH + 1, True, 1.5, "1"):
        with pytest.raises(BadRequest):
            engine.add("a", bad_hash)  # type: ignore[arg-type]
    for bad_id in ("", "a\x00b", 3):
        with pytest.raises(BadRequest):
            engine.add(bad_id, 1)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        engine.within(1, -1)
    with pytest.raises(BadRequest):
        engine.nearest(1, -2)
    with pytest.raises(BadRequest):
        engine.add_many(["a", "b"], np.array([1], dtype=np.uint64))
    with pytest.raises(BadRequest):
        engine.add_many(["a"], np.array([-1], dtype=np.int64))


def test_add_many_accepts_arrays_of_ids_and_signed_hashes(engine: HashIndex) -> None:
    engine.add_many(np.array(["b", "a"]), np.array([7, 9], dtype=np.int64))
    engine.add_many(np.array([b"c"]), [11])  # type: ignore[arg-type]
    assert engine.nearest(7, 3) == [Match("b", 0), Match("c", 2), Match("a", 3)]


def test_make_index_and_registry() -> None:
    assert isinstance(make_index("mih"), MultiIndexHashing)
    with pytest.raises(ConfigError):
        make_index("annoy")
    with pytest.raises(ConfigError):
        IndexSet("annoy")
    indexes = IndexSet("vptree", leaf_size=8)
    assert indexes.peek("acc_1", "phash") is None and len(indexes) == 0
    index = indexes.get("acc_1", "phash")
    assert isinstance(index, VPTreeIndex)
    assert indexes.get("acc_1", "phash") is index
    assert indexes.get("acc_1", "dhash") is not index
    assert indexes.get("acc_2", "phash") is not index
    index.add("img_1", 42)
    other = indexes.peek("acc_2", "phash")
    assert other is not None and other.within(42, 0) == []
    assert sorted(indexes) == [("acc_1", "dhash"), ("acc_1", "phash"), ("acc_2", "phash")]
    assert indexes.drop("acc_1", "dhash") and not indexes.drop("acc_1", "dhash")
    assert indexes.memory_bytes() > 0


def test_helpers() -> None:
    assert expand_ranges(np.array([5, 0, 9]), np.array([7, 0, 11])).tolist() == [5, 6, 9, 10]
    assert expand_ranges(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).tolist() == []
    assert kth_smallest(np.array([3, 1, 2, 1], dtype=np.uint8), 3) == 2
    assert choose_substrings(1_000_000) == 4 and choose_substrings(10_000_000) == 3
    assert choose_substrings(0) == 16
    assert [w for _, w in substring_layout(3)] == [22, 21, 21]
    assert sum(w for _, w in substring_layout(5)) == 64


def test_mih_memory_per_hash_is_compact() -> None:
    """<= 32 bytes per hash for the index itself (hashes, tables, offsets, tombstones);
    ids are counted on top (fixed-width bytes, their length)."""
    n = 100_000
    rng = np.random.default_rng(3)
    ids = np.char.add(b"img_", np.arange(n).astype("S27"))
    index = MultiIndexHashing()
    index.add_many(ids, rng.integers(0, MAX_HASH, n, dtype=np.uint64, endpoint=True))
    assert (index.memory_bytes() - ids.nbytes) / n <= 32
