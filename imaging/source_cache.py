"""The source cache: downloaded originals on disk, by content, bounded, least recently used out.

Bytes of images never travel through the event bus (DESIGN.md): the downloader
writes the original here and events carry its sha256. The render server reads
the same cache, so a thumbnail of an image already ingested costs no download.

Layout of `settings.sources_dir`:

    ab/cdef0123...      one file per source, named by its sha256 (first two hex digits = folder)
    urls.sqlite3        url -> sha256, final_url, content_type, filename (for `get_or_fetch`)

Why it is built this way:

- Content-addressed: two URLs of the same bytes share one file, and a name
  never points at other bytes than its hash says.
- Atomic writes (temp file in the same folder, fsync, rename): a reader, or a
  process that crashes mid-write, never sees half a file under a final name.
  They bypass the page cache (O_DIRECT, `imgkit.files.write_blob_atomic`): copying
  a 9 MB original into fresh page-cache pages cost 20-25 ms of kernel time.
- LRU by file mtime: every access sets the mtime (explicitly, not relying on
  atime, which `noatime` mounts never update), and the in-memory order is
  rebuilt from mtimes at start, so a restart keeps the order. Eviction happens
  when a `put` takes the total past `source_cache_max_bytes`; the newest entry is
  never evicted, even if it alone is larger than the bound.
- Single-flight `get_or_fetch`: concurrent requests for one URL (a burst of
  thumbnails of one new image) make one download; every waiter gets the same
  result or the same error, and errors are not cached.

One process owns a directory (two processes would each keep their own LRU
order and byte count; nothing breaks, but the bound becomes approximate).
A path handed out can be evicted later by another `put`: readers that hold a
`CachedSource` for long should open the file promptly or call `read`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from imaging.fetch import Fetched
from imgkit.files import write_blob_atomic
from imgkit.settings import Settings

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_TMP_PREFIX = ".tmp-"
INDEX_FILE = "urls.sqlite3"

Fetcher = Callable[[str], Awaitable[Fetched]]


@dataclass(frozen=True)
class CachedSource:
    """A source in the cache, and what its download said about it."""

    sha256: str                 # hex digest of the bytes; the cache key
    path: Path                  # the file holding them (may be evicted later; see module docs)
    size: int                   # bytes
    final_url: str              # where the bytes came from (after redirects and og:image discovery)
    content_type: str | None    # the Content-Type the server sent, informational
    filename: str | None        # the name the server or URL gave, sanitised; None if none
    data: bytes | None = field(default=None, repr=False, compare=False)
    """The bytes when this call (or the one it waited for) just downloaded them; None from the cache."""

    def read(self) -> bytes:
        return self.data if self.data is not None else self.path.read_bytes()


class SourceCache:
    """Content-addressed, size-bounded, LRU-evicted store of downloaded sources.

    Synchronous methods are thread-safe (the async path runs `put` in a worker
    thread so a 50 MB write does not stall the event loop).
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._lru: OrderedDict[str, int] = OrderedDict()   # sha256 -> size, least recent first
        self._total = 0
        self._inflight: dict[str, asyncio.Task[CachedSource]] = {}
        self._db = sqlite3.connect(self.directory / INDEX_FILE, check_same_thread=False,
                                   isolation_level=None)   # autocommit: each statement is atomic
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS urls (url TEXT PRIMARY KEY, sha256 TEXT NOT NULL, "
            "final_url TEXT NOT NULL, content_type TEXT, filename TEXT, stored_at REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS urls_sha256 ON urls (sha256)")
        self._load()

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceCache:
        return cls(settings.sources_dir, settings.source_cache_max_bytes)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- state --------------------------------------------------------------------------
    @property
    def total_bytes(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, sha256: object) -> bool:
        return isinstance(sha256, str) and sha256 in self._lru

    def _blob(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / sha256[2:]

    def _load(self) -> None:
        """Rebuild the LRU order from the files' mtimes; remove temp files a crash left behind."""
        found: list[tuple[int, str, int]] = []
        for folder in self.directory.iterdir():
            if not (folder.is_dir() and len(folder.name) == 2):
                continue
            for entry in os.scandir(folder):
                if entry.name.startswith(_TMP_PREFIX):
                    Path(entry.path).unlink(missing_ok=True)
                    continue
                sha = folder.name + entry.name
                if entry.is_file() and _SHA256.fullmatch(sha):
                    st = entry.stat()
                    found.append((st.st_mtime_ns, sha, st.st_size))
        found.sort()
        with self._lock:
            for _mtime, sha, size in found:
                self._lru[sha] = size
                self._total += size
            self._evict_locked(keep=None)

    # --- bytes by sha256 ----------------------------------------------------------------
    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store `data` (once) and return its sha256; evicts least recently used sources past the bound.

        `sha256` may be given when the caller computed it from these very bytes (the
        process agent hashes once for this and the extraction): hashing a large original twice is a
        measurable share of the pipeline's CPU per image.
        """
        sha = sha256 or hashlib.sha256(data).hexdigest()
        target = self._blob(sha)
        with self._lock:
            if sha in self._lru and self._touch_locked(sha):
                return sha
        write_blob_atomic(target, data, temp_prefix=_TMP_PREFIX)
        # the LRU order after a restart comes from mtimes; the kernel's write timestamps tick
        # coarsely (jiffies), so two quick puts could otherwise tie
        now = time.time_ns()
        os.utime(target, ns=(now, now))
        with self._lock:
            if sha not in self._lru:
                self._lru[sha] = len(data)
                self._total += len(data)
            self._lru.move_to_end(sha)
            self._evict_locked(keep=sha)
        return sha

    def path(self, sha256: str) -> Path | None:
        """The file holding `sha256`, or None if not cached; counts as a use (LRU)."""
        if not _SHA256.fullmatch(sha256):   # also keeps "../" and friends out of the path
            return None
        with self._lock:
            if sha256 not in self._lru or not self._touch_locked(sha256):
                return None
        return self._blob(sha256)

    def read(self, sha256: str) -> bytes | None:
        """The bytes of `sha256`, or None if not cached; counts as a use (LRU)."""
        path = self.path(sha256)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:           # evicted (or removed by hand) since `path`
            with self._lock:
                self._forget_locked(sha256)
            return None

    def _touch_locked(self, sha256: str) -> bool:
        """Mark `sha256` most recently used, in memory and on disk; False if its file is gone."""
        try:
            os.utime(self._blob(sha256), ns=(time.time_ns(), time.time_ns()))
        except FileNotFoundError:
            self._forget_locked(sha256)
            return False
        self._lru.move_to_end(sha256)
        return True

    def _forget_locked(self, sha256: str) -> None:
        size = self._lru.pop(sha256, None)
        if size is not None:
            self._total -= size
        self._db.execute("DELETE FROM urls WHERE sha256 = ?", (sha256,))

    def _evict_locked(self, *, keep: str | None) -> None:
        while self._total > self.max_bytes and self._lru:
            sha, _size = next(iter(self._lru.items()))
            if sha == keep:                 # only the newest is left: it stays, whatever its size
                break
            self._forget_locked(sha)
            self._blob(sha).unlink(missing_ok=True)
            log.debug("evicted source", extra={"sha256": sha, "cache_bytes": self._total})

    # --- sources by URL -----------------------------------------------------------------
    def lookup(self, url: str) -> CachedSource | None:
        """The cached source downloaded for `url`, if its bytes are still here; counts as a use."""
        with self._lock:
            row = self._db.execute(
                "SELECT sha256, final_url, content_type, filename FROM urls WHERE url = ?",
                (url,)).fetchone()
            if row is None:
                return None
            sha, final_url, content_type, filename = row
            path = self.path(sha)
            if path is None:
                self._db.execute("DELETE FROM urls WHERE url = ?", (url,))
                return None
            return CachedSource(sha256=sha, path=path, size=self._lru[sha], final_url=final_url,
                                content_type=content_type, filename=filename)

    async def get_or_fetch(self, url: str, fetcher: Fetcher) -> CachedSource:
        """The source for `url`, downloading it with `fetcher` unless cached.

        Concurrent calls for one URL share one download (a task per URL; each
        caller awaits it shielded, so a caller that gives up does not cancel the
        others'). Its error reaches every waiter and is not cached: the next
        call tries again. `fetcher` is typically
        `lambda u: imaging.fetch.fetch(u, settings, client)`.
        """
        cached = self.lookup(url)
        if cached is not None:
            return cached
        task = self._inflight.get(url)
        if task is None:
            task = asyncio.create_task(self._fetch_and_store(url, fetcher), name=f"fetch {url[:100]}")
            self._inflight[url] = task
            task.add_done_callback(lambda done: self._finished(url, done))
        return await asyncio.shield(task)

    def _finished(self, url: str, task: asyncio.Task[CachedSource]) -> None:
        if self._inflight.get(url) is task:
            del self._inflight[url]
        if not task.cancelled():
            task.exception()                # retrieved: no "never retrieved" warning if nobody waits

    async def _fetch_and_store(self, url: str, fetcher: Fetcher) -> CachedSource:
        fetched = await fetcher(url)
        sha = await asyncio.to_thread(self.put, fetched.data)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO urls (url, sha256, final_url, content_type, filename, stored_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (url, sha, fetched.final_url, fetched.content_type, fetched.filename, time.time()))
        return CachedSource(sha256=sha, path=self._blob(sha), size=len(fetched.data),
                            final_url=fetched.final_url, content_type=fetched.content_type,
                            filename=fetched.filename, data=fetched.data)
