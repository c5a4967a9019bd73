"""Durable file writes, the one way ImgKit puts bytes on disk that must survive a crash."""

from __future__ import annotations

import os
import tempfile
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
