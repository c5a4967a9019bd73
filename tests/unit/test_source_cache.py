"""The source cache: content addressing, LRU under a byte bound, restarts, single-flight."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging.fetch import Fetched, fetch
from imaging.source_cache import INDEX_FILE, SourceCache
from imgkit.errors import FetchError
from imgkit.settings import load_settings
from tests.support.http_server import HTTPTestServer, Reply

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)


def blob(n: int, fill: int) -> bytes:
    return bytes([fill]) * n


def fetched(url: str, data: bytes, **extra: str | None) -> Fetched:
    return Fetched(url=url, final_url=str(extra.get("final_url") or url),
                   content_type=extra.get("content_type", "image/png"),
                   filename=extra.get("filename"), data=data)


@pytest.fixture
def server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as s:
        yield s


def test_put_read_path_layout(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path, max_bytes=10_000)
    sha = cache.put(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert cache.path(sha) == tmp_path / sha[:2] / sha[2:]
    assert cache.read(sha) == b"hello"
    assert cache.put(b"hello") == sha                     # stored once
    assert len(cache) == 1 and cache.total_bytes == 5
    assert cache.read("0" * 64) is None
    assert cache.path("../" + sha[3:]) is None            # not a sha256: never a path
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.rglob("*"))


def test_lru_eviction_under_the_byte_bound(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path, max_bytes=1000)
    a = cache.put(blob(400, 1))
    b = cache.put(blob(400, 2))
    assert cache.read(a) is not None                      # a is now more recent than b
    c = cache.put(blob(400, 3))                           # 1200 > 1000: the least recent (b) goes
    assert a in cache and c in cache and b not in cache
    assert not (tmp_path / b[:2] / b[2:]).exists()
    assert cache.total_bytes == 800
    d = cache.put(blob(900, 4))                           # needs both others gone
    assert list(cache._lru) == [d] and cache.total_bytes == 900
    big = cache.put(blob(1500, 5))                        # bigger than the bound: kept alone
    assert cache.read(big) is not None and len(cache) == 1


def test_restart_keeps_entries_and_lru_order(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path, max_bytes=1000)
    a = cache.put(blob(300, 1))
    b = cache.put(blob(300, 2))
    c = cache.put(blob(300, 3))
    assert cache.path(a) is not None                      # order now: b, c, a
    cache.close()
    (tmp_path / a[:2] / ".tmp-crashed").write_bytes(b"half a file")

    reopened = SourceCache(tmp_path, max_bytes=1000)
    assert list(reopened._lru) == [b, c, a]
    assert reopened.total_bytes == 900
    assert not (tmp_path / a[:2] / ".tmp-crashed").exists()
    reopened.put(blob(300, 4))
    assert b not in reopened and a in reopened and c in reopened


def test_restart_with_a_smaller_bound_evicts(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path, max_bytes=10_000)
    old = cache.put(blob(600, 1))
    new = cache.put(blob(600, 2))
    cache.close()
    smaller = SourceCache(tmp_path, max_bytes=1000)
    assert old not in smaller and new in smaller


async def test_get_or_fetch_caches_by_url_and_survives_restart(tmp_path: Path) -> None:
    calls: list[str] = []

    async def fetcher(url: str) -> Fetched:
        calls.append(url)
        return fetched(url, PNG, final_url="https://cdn.example/a.png", filename="a.png")

    cache = SourceCache(tmp_path, max_bytes=1 << 20)
    first = await cache.get_or_fetch("https://example.com/page", fetcher)
    again = await cache.get_or_fetch("https://example.com/page", fetcher)
    assert first == again and calls == ["https://example.com/page"]
    assert first.read() == PNG and first.size == len(PNG) and first.path.read_bytes() == PNG
    # the download's own caller renders from memory; a cache hit reads the file
    assert first.data == PNG and again.data is None
    assert (first.final_url, first.content_type, first.filename) == \
        ("https://cdn.example/a.png", "image/png", "a.png")
    cache.close()

    reopened = SourceCache(tmp_path, max_bytes=1 << 20)
    assert (tmp_path / INDEX_FILE).exists()
    third = await reopened.get_or_fetch("https://example.com/page", fetcher)
    assert third == first and len(calls) == 1


async def test_evicted_source_is_fetched_again(tmp_path: Path) -> None:
    calls: list[str] = []

    async def fetcher(url: str) -> Fetched:
        calls.append(url)
        return fetched(url, blob(600, len(calls)))

    cache = SourceCache(tmp_path, max_bytes=1000)
    await cache.get_or_fetch("https://a.example/1", fetcher)
    await cache.get_or_fetch("https://a.example/2", fetcher)   # evicts the first
    assert cache.lookup("https://a.example/1") is None
    await cache.get_or_fetch("https://a.example/1", fetcher)
    assert calls == ["https://a.example/1", "https://a.example/2", "https://a.example/1"]


async def test_single_flight_against_a_real_server(tmp_path: Path, server: HTTPTestServer) -> None:
    # The delay keeps the download in flight while all 20 callers arrive.
    url = server.route("/a.png", Reply(body=PNG, content_type="image/png", delay=0.3))
    settings = load_settings(fetch_allow_private=True, fetch_timeout=5.0)
    cache = SourceCache(tmp_path, max_bytes=1 << 20)

    results = await asyncio.gather(*(cache.get_or_fetch(url, lambda u: fetch(u, settings))
                                     for _ in range(20)))
    assert server.hits("/a.png") == 1
    assert len({r.sha256 for r in results}) == 1
    assert results[0].read() == PNG
    assert cache._inflight == {}
    await cache.get_or_fetch(url, lambda u: fetch(u, settings))
    assert server.hits("/a.png") == 1


async def test_errors_reach_every_waiter_and_are_not_cached(tmp_path: Path,
                                                             server: HTTPTestServer) -> None:
    server.route("/flaky", Reply(status=503, body=b"busy", content_type="text/plain", delay=0.2))
    url = server.url("/flaky")
    settings = load_settings(fetch_allow_private=True, fetch_timeout=5.0)
    cache = SourceCache(tmp_path, max_bytes=1 << 20)

    results = await asyncio.gather(*(cache.get_or_fetch(url, lambda u: fetch(u, settings))
                                     for _ in range(10)), return_exceptions=True)
    assert all(isinstance(r, FetchError) and r.code == "fetch_http_503" for r in results)
    assert server.hits("/flaky") == 1

    server.image("/flaky", PNG)                                # the server recovered
    got = await cache.get_or_fetch(url, lambda u: fetch(u, settings))
    assert got.read() == PNG
    assert server.hits("/flaky") == 2


async def test_a_cancelled_waiter_does_not_cancel_the_others(tmp_path: Path) -> None:
    release = asyncio.Event()
    calls = 0

    async def fetcher(url: str) -> Fetched:
        nonlocal calls
        calls += 1
        await release.wait()
        return fetched(url, PNG)

    cache = SourceCache(tmp_path, max_bytes=1 << 20)
    first = asyncio.create_task(cache.get_or_fetch("https://x.example/a", fetcher))
    second = asyncio.create_task(cache.get_or_fetch("https://x.example/a", fetcher))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    release.set()
    assert (await second).read() == PNG
    assert first.cancelled() and calls == 1


async def test_different_urls_same_bytes_share_one_file(tmp_path: Path) -> None:
    async def fetcher(url: str) -> Fetched:
        return fetched(url, PNG)

    cache = SourceCache(tmp_path, max_bytes=1 << 20)
    a = await cache.get_or_fetch("https://a.example/x.png", fetcher)
    b = await cache.get_or_fetch("https://b.example/y.png", fetcher)
    assert a.path == b.path and len(cache) == 1
