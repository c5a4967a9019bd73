"""Snapshots round-trip contents and metadata, are written atomically, and fail loudly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.brute import BruteForceIndex
from index.engine import MAX_HASH, make_index
from index.mih import MultiIndexHashing
from index.registry import IndexSet
from index.snapshot import (
    SnapshotError,
    load_index_set,
    load_snapshot,
    read_snapshot,
    save_index_set,
    save_snapshot,
)

OFFSETS = {"kafka": {"imgkit.images.hashes": {"0": 1234, "1": 99}}, "engine": "mih"}


def filled(engine: str) -> MultiIndexHashing | BruteForceIndex:
    index = make_index(engine, delta_limit=4) if engine != "brute" else make_index("brute")
    index.add_many([f"img_{i}" for i in range(20)], np.arange(20, dtype=np.uint64) * 977)
    index.add("img_é", MAX_HASH)  # non-ASCII id, extreme hash, in the delta
    index.remove("img_3")  # a tombstone must not come back
    return index  # type: ignore[return-value]


@pytest.mark.parametrize("engine", ["mih", "vptree", "brute"])
def test_round_trip_into_any_engine(tmp_path: Path, engine: str) -> None:
    source = filled(engine)
    path = tmp_path / "snap" / "index.npz"
    save_snapshot(path, source, OFFSETS)
    assert [p.name for p in path.parent.iterdir()] == ["index.npz"]  # no temp file left
    target = BruteForceIndex()
    assert load_snapshot(path, target) == OFFSETS
    assert len(target) == len(source) == 20
    assert target.get("img_é") == MAX_HASH and target.get("img_3") is None
    for query in (0, 977 * 5 + 1, MAX_HASH):
        assert target.within(query, 16) == source.within(query, 16)


def test_overwrite_replaces_the_previous_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "index.npz"
    index = filled("mih")
    save_snapshot(path, index, {"offset": 1})
    index.add("img_new", 5)
    save_snapshot(path, index, {"offset": 2})
    snapshot = read_snapshot(path)
    assert snapshot.metadata == {"offset": 2} and len(snapshot.ids) == 21
    assert snapshot.hashes.dtype == np.uint64
    assert len(list(tmp_path.iterdir())) == 1


def test_index_set_round_trip(tmp_path: Path) -> None:
    indexes = IndexSet("mih")
    indexes.get("acc_1", "phash").add("img_1", 1)
    indexes.get("acc_1", "dhash").add("img_1", 2)
    indexes.get("acc_2", "phash").add_many(["img_2", "img_3"], np.array([3, 4], dtype=np.uint64))
    indexes.get("acc_3", "phash")  # empty indexes survive too
    path = tmp_path / "indexes.npz"
    save_index_set(path, indexes, OFFSETS)
    restored = IndexSet("vptree")
    assert load_index_set(path, restored) == OFFSETS
    assert sorted(restored) == sorted(indexes)
    assert restored.get("acc_1", "dhash").get("img_1") == 2
    assert [m.id for m in restored.get("acc_2", "phash").within(3, 3)] == ["img_2", "img_3"]
    assert len(restored.get("acc_3", "phash")) == 0


def test_metadata_must_survive_json(tmp_path: Path) -> None:
    path = tmp_path / "index.npz"
    with pytest.raises(SnapshotError):
        save_snapshot(path, filled("brute"), {"offsets": {0: 12}})  # int keys would come back as str
    with pytest.raises(SnapshotError):
        save_snapshot(path, filled("brute"), {"when": object()})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_unreadable_snapshots(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_snapshot(tmp_path / "missing.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(SnapshotError):
        read_snapshot(corrupt)
    partial = tmp_path / "partial.npz"
    np.savez(partial, ids=np.array([b"a"]))
    with pytest.raises(SnapshotError):
        read_snapshot(partial)
