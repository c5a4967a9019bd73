"""Atomic file writes: whole files or none, O_DIRECT for blobs with a buffered fallback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from imgkit import files
from imgkit.files import write_atomic, write_blob_atomic

SIZES = [1, 4095, 4096, 4097, 3 * 4096 + 17, 2_600_001]


@pytest.mark.parametrize("size", SIZES)
def test_blob_is_written_exactly_whatever_its_alignment(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    target = tmp_path / "ab" / "blob"
    write_blob_atomic(target, data)
    assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["blob"]  # no temporary file left


def test_pooled_buffers_never_leak_old_bytes_into_a_smaller_blob(tmp_path: Path) -> None:
    write_blob_atomic(tmp_path / "big", b"\xff" * 50_000)
    write_blob_atomic(tmp_path / "small", b"\x01" * 10)  # reuses the big one's buffer
    assert (tmp_path / "small").read_bytes() == b"\x01" * 10


def test_replacing_a_blob_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    write_blob_atomic(target, b"old" * 5000)
    write_blob_atomic(target, b"new" * 3)
    assert target.read_bytes() == b"new" * 3


def test_a_filesystem_without_o_direct_gets_buffered_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open
    tried: list[int] = []

    def no_direct(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if flags & os.O_DIRECT:
            tried.append(flags)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_direct)
    monkeypatch.setattr(files, "_no_direct", set())
    for i in range(3):
        write_blob_atomic(tmp_path / f"blob{i}", b"x" * 9000)
        assert (tmp_path / f"blob{i}").read_bytes() == b"x" * 9000
    assert len(tried) == 1  # the directory is remembered: O_DIRECT is not tried again


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", broken)
    with pytest.raises(OSError, match="No space"):
        write_blob_atomic(tmp_path / "blob", b"y" * 5000)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match="No space"):  # and the pooled buffer is still usable
        write_blob_atomic(tmp_path / "blob", b"y" * 5000)


def test_write_atomic_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "snapshot"
    write_atomic(target, lambda out: out.write(b"complete"))

    def half(out: object) -> None:
        out.write(b"hal")  # type: ignore[attr-defined]
        raise RuntimeError("crashed mid-write")

    with pytest.raises(RuntimeError):
        write_atomic(target, half)
    assert target.read_bytes() == b"complete" and [p.name for p in tmp_path.iterdir()] == ["snapshot"]
