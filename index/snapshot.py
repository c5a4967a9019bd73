"""Snapshots of index contents: ids + hashes + an opaque metadata dict, written atomically.

The index service restarts by loading its last snapshot and replaying Kafka from the
offsets stored in the snapshot's metadata, so a snapshot must never be half-written: it
is written to a temporary file in the same directory, fsynced, renamed over the old one
(atomic on POSIX), and the directory is fsynced so the rename itself survives a crash.

The format is a plain uncompressed `.npz` (no pickle): `ids` (fixed-width UTF-8 bytes),
`hashes` (uint64), `metadata` (UTF-8 JSON as bytes) and `format`. Only contents are
stored, never an engine's structure: loading rebuilds it, which takes seconds even at
10 million hashes and lets a snapshot move between engines.

Metadata is JSON: keys must be strings (`{"topic": {"0": 42}}`, not `{0: 42}`), and a
dict that would not come back equal is refused at save time rather than at restart.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgkit.errors import ImgKitError
from imgkit.files import write_atomic
from index.engine import HashIndex, as_hash_array, as_id_bytes
from index.registry import IndexSet

FORMAT = 1


class SnapshotError(ImgKitError):
    """A snapshot cannot be written (bad metadata) or read back (corrupt, wrong format)."""

    code = "snapshot_invalid"
    status = 500


@dataclass(frozen=True)
class Snapshot:
    ids: np.ndarray
    hashes: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    #: for index-set snapshots: (account_id, kind, count) per index, in the order of ids
    groups: list[tuple[str, str, int]] = field(default_factory=list)


def _encode_metadata(metadata: dict[str, Any]) -> np.ndarray:
    try:
        text = json.dumps(metadata, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"snapshot metadata is not JSON: {exc}") from None
    if json.loads(text) != metadata:
        raise SnapshotError("snapshot metadata would not load back equal (non-string keys or tuples?)")
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path = Path(path)
    write_atomic(path, lambda handle: np.savez(handle, **arrays),  # type: ignore[arg-type]
                 temp_prefix=f".{path.name}.", sync_directory=True)


def save_snapshot(path: str | Path, index: HashIndex, metadata: dict[str, Any]) -> None:
    """Write the contents of one index and `metadata` to `path`, atomically."""
    ids, hashes = index.items()
    _write_atomic(Path(path), {"format": np.array([FORMAT]), "ids": ids, "hashes": hashes,
                               "metadata": _encode_metadata(metadata)})


def save_index_set(path: str | Path, indexes: IndexSet, metadata: dict[str, Any]) -> None:
    """Write every index of the set (one file, so one set of offsets covers all of them)."""
    id_parts, hash_parts, groups = [], [], []
    for (account, kind), index in indexes.items():
        ids, hashes = index.items()
        id_parts.append(ids)
        hash_parts.append(hashes)
        groups.append([account, kind, len(ids)])
    arrays = {
        "format": np.array([FORMAT]),
        "ids": np.concatenate([np.zeros(0, dtype="S1"), *id_parts]),
        "hashes": np.concatenate([np.zeros(0, dtype=np.uint64), *hash_parts]),
        "metadata": _encode_metadata(metadata),
        "groups": np.frombuffer(json.dumps(groups).encode("utf-8"), dtype=np.uint8),
    }
    _write_atomic(Path(path), arrays)


def read_snapshot(path: str | Path) -> Snapshot:
    """Read a snapshot; FileNotFoundError if there is none, SnapshotError if it is unreadable."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            if int(data["format"][0]) != FORMAT:
                raise SnapshotError("unsupported snapshot format", path=str(path),
                                    format=int(data["format"][0]))
            ids = as_id_bytes(data["ids"])
            hashes = as_hash_array(data["hashes"])
            metadata = json.loads(data["metadata"].tobytes().decode("utf-8"))
            groups = (json.loads(data["groups"].tobytes().decode("utf-8"))
                      if "groups" in data.files else [])
    except FileNotFoundError:
        raise
    except SnapshotError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, ImgKitError) as exc:
        raise SnapshotError(f"unreadable snapshot: {exc}", path=str(path)) from None
    if len(ids) != len(hashes) or sum(int(g[2]) for g in groups) not in (0, len(ids)):
        raise SnapshotError("snapshot arrays disagree in length", path=str(path))
    return Snapshot(ids, hashes, metadata, [(str(a), str(k), int(c)) for a, k, c in groups])


def load_snapshot(path: str | Path, index: HashIndex) -> dict[str, Any]:
    """Fill `index` (normally empty) from the snapshot; return its metadata."""
    snapshot = read_snapshot(path)
    index.add_many(snapshot.ids, snapshot.hashes)
    return snapshot.metadata


def load_index_set(path: str | Path, indexes: IndexSet) -> dict[str, Any]:
    """Fill `indexes` from a `save_index_set` snapshot; return its metadata."""
    snapshot = read_snapshot(path)
    start = 0
    for account, kind, count in snapshot.groups:
        indexes.get(account, kind).add_many(snapshot.ids[start:start + count],
                                            snapshot.hashes[start:start + count])
        start += count
    return snapshot.metadata
