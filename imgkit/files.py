"""Durable file writes, the one way ImgKit puts bytes on disk that must survive a crash."""

from __future__ import annotations

import errno
import mmap
import os
import secrets
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, write: Callable[[BinaryIO], object], *, temp_prefix: str = ".tmp-",
                 sync_directory: bool = False) -> None:
    """Write `path` so that readers see the old file or the whole new one, never a part.

    The content goes to a temporary file in the same directory, is fsynced, then renamed
    over `path` (atomic on POSIX). `sync_directory` also fsyncs the directory, so the
    rename itself survives a power cut (snapshots need that; a cache can re-download).
    A failure removes the temporary file.
    """
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_directory:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- large blobs: O_DIRECT ------------------------------------------------------------------
#
# A buffered write copies every byte into freshly allocated page-cache pages; on the VMs we
# measured (tests/bench, README "Thumbnails"), that cost 20-25 ms of kernel time per 9 MB
# original, a fifth of a whole thumbnail. O_DIRECT hands the disk the process's own pages
# instead: 0.5 ms for the same file. It needs a page-aligned buffer (copying into a reused
# one costs ~1 ms; a fresh one would pay the page faults again), so buffers are pooled.
# Filesystems without O_DIRECT (some tmpfs, FUSE) fall back to `write_atomic`.

_PAGE = mmap.PAGESIZE
DIRECT_MAX_BYTES = 64 * 2**20
"""Larger blobs are written buffered: a pooled buffer this big is already a lot to keep."""
_POOL_KEEP = 4


class _AlignedBuffers:
    """A few page-aligned buffers kept between writes, so their pages are faulted in once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[mmap.mmap] = []

    def take(self, size: int) -> mmap.mmap:
        with self._lock:
            for i, buffer in enumerate(self._free):
                if len(buffer) >= size:
                    return self._free.pop(i)
            if self._free:  # too small: drop the smallest, a bigger one replaces it
                self._free.sort(key=len)
                self._free.pop(0).close()
        return mmap.mmap(-1, max(size, _PAGE))

    def give(self, buffer: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < _POOL_KEEP:
                self._free.append(buffer)
                return
        buffer.close()


_buffers = _AlignedBuffers()
_no_direct: set[Path] = set()
"""Directories whose filesystem refused O_DIRECT: they get buffered writes."""


def write_blob_atomic(path: Path, data: bytes, *, temp_prefix: str = ".tmp-") -> None:
    """`write_atomic` for one large immutable blob, bypassing the page cache (O_DIRECT).

    Same guarantees: a temporary file, fsynced, renamed over `path`. The bytes are not
    left in the page cache, which suits blobs that are written now and read rarely.
    """
    directory = path.parent
    if len(data) > DIRECT_MAX_BYTES or directory in _no_direct or not hasattr(os, "O_DIRECT"):
        write_atomic(path, lambda out: out.write(data), temp_prefix=temp_prefix)
        return
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{temp_prefix}{secrets.token_hex(8)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        _no_direct.add(directory)
        write_atomic(path, lambda out: out.write(data), temp_prefix=temp_prefix)
        return
    padded = -(-len(data) // _PAGE) * _PAGE
    buffer = _buffers.take(padded)
    try:
        try:
            buffer[:len(data)] = data
            written = 0
            with memoryview(buffer) as whole, whole[:padded] as view:
                while written < padded:
                    written += os.pwrite(fd, view[written:], written)
            os.ftruncate(fd, len(data))  # the padding of the last page goes
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _buffers.give(buffer)
