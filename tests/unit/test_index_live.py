"""`LiveIndex` (engine + write layers + folds off the query path) answers like the oracle."""

from __future__ import annotations

import random

import pytest

from index.brute import BruteForceIndex
from index.live import LiveIndex
from index.service import CrossCheck, IndexService, merge_matches
from schemas.events import ImageHashes


def _random_ops(seed: int, n: int) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    centres = [rng.getrandbits(64) for _ in range(5)]
    ops = []
    for _ in range(n):
        image = f"img{rng.randrange(300):04d}"
        if rng.random() < 0.2:
            ops.append(("remove", image, 0))
        else:  # clustered hashes, so radius queries find several
            centre = rng.choice(centres)
            flips = 0
            for _ in range(rng.randrange(6)):
                flips |= 1 << rng.randrange(64)
            ops.append(("add", image, centre ^ flips))
    return ops


@pytest.mark.parametrize("engine", ["mih", "vptree", "brute"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_live_index_matches_the_oracle_through_folds(engine: str, seed: int) -> None:
    live, oracle = LiveIndex(engine, fold_at=37), BruteForceIndex()
    rng = random.Random(seed)
    pending = None
    for step, (op, image, value) in enumerate(_random_ops(seed, 1500)):
        if op == "add":
            live.add(image, value)
            oracle.add(image, value)
        else:
            assert live.remove(image) == oracle.remove(image)
        # folds start and end at arbitrary points, as background rebuilds would
        if pending is None and live.needs_fold() and rng.random() < 0.5:
            pending = live.begin_fold()
        elif pending is not None and rng.random() < 0.1:
            live.end_fold(pending())
            pending = None
        elif pending is None and live.needs_fold():
            live.fold()
        if step % 25 == 0:
            assert len(live) == len(oracle)
            query = value or rng.getrandbits(64)
            for radius in (0, 3, 8, 20):
                assert live.within(query, radius) == oracle.within(query, radius)
            for k in (1, 5, 50):
                assert live.nearest(query, k) == oracle.nearest(query, k)
            assert live.get(image) == oracle.get(image)
    ids, hashes = live.items()
    assert sorted(zip(ids.tolist(), hashes.tolist(), strict=True)) == sorted(
        zip(*(a.tolist() for a in oracle.items()), strict=True))


def test_aborted_fold_keeps_every_write() -> None:
    live, oracle = LiveIndex("mih", fold_at=10), BruteForceIndex()
    for i in range(30):
        live.add(f"a{i}", i * 977)
        oracle.add(f"a{i}", i * 977)
    live.fold()
    live.begin_fold()
    live.remove("a3")
    oracle.remove("a3")
    live.add("a4", 1)
    oracle.add("a4", 1)
    live.abort_fold()
    assert not live.folding
    assert live.nearest(0, 40) == oracle.nearest(0, 40)


def test_service_applies_deletes_and_cross_check() -> None:
    service = IndexService("mih")
    service.apply_many([
        ImageHashes(image_id="x1", account_id="acc", phash="00000000000000ff", dhash="0000000000000000"),
        ImageHashes(image_id="x2", account_id="acc", phash="00000000000000fe", dhash="ffffffffffffffff"),
        ImageHashes(image_id="y1", account_id="other", phash="00000000000000ff", dhash="0000000000000000"),
    ])
    found = service.similar("acc", "phash", 0xFF, 8, 10)
    assert [(m.id, m.distance) for m in found] == [("x1", 0), ("x2", 1)]
    checked = service.similar("acc", "phash", 0xFF, 8, 10, CrossCheck(0, 10))
    assert [m.id for m in checked] == ["x1"]
    service.apply_many([ImageHashes(image_id="x1", account_id="acc", deleted=True)])
    assert [m.id for m in service.similar("acc", "phash", 0xFF, 8, 10)] == ["x2"]
    assert service.similar("acc", "dhash", 0, 8, 10) == []
    assert service.counts() == {"phash": 2, "dhash": 2}


def test_merge_is_the_single_index_answer() -> None:
    from index.engine import Match

    a = [Match("b", 1), Match("d", 3)]
    b = [Match("a", 1), Match("c", 2)]
    assert merge_matches([a, b], 3) == [Match("a", 1), Match("b", 1), Match("c", 2)]
