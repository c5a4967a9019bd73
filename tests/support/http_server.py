"""A real HTTP/1.1 server on 127.0.0.1 for tests that download things.

Tests of downloads must go through real sockets (the SSRF guard and the
connect-time checks live in the network layer, which a mock transport would
skip), so this serves canned replies from a thread: images, HTML pages,
redirects, slow and huge bodies, chunked or with Content-Length, and records
every request so a test can count them (single-flight, caching).

    with HTTPTestServer() as server:
        server.image("/a.png", png_bytes)
        server.redirect("/r", "/a.png")
        server.html("/page", '<meta property="og:image" content="/a.png">')
        url = server.url("/r")
        ...
        assert server.hits("/a.png") == 1

The `http_server` fixture (function-scoped) gives a started server; enable it
with `pytest_plugins = ["tests.support.http_server"]` in a conftest, or wrap
`HTTPTestServer` in a fixture of the test module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pytest

Body = bytes | Iterable[bytes] | Callable[[], Iterable[bytes]]


@dataclass
class Reply:
    """What the server answers to one path."""

    status: int = 200
    body: Body = b""                  # bytes, an iterable of chunks, or a callable making one (re-servable)
    content_type: str | None = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0                # seconds before the status line is sent
    chunk_delay: float = 0.0          # seconds between body chunks
    content_length: bool = True       # False: Transfer-Encoding: chunked (size unknown in advance)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str                         # path and query, as sent
    headers: dict[str, str]


Handler = Reply | Callable[[RecordedRequest], Reply]


class LoopbackHTTPServer(ThreadingHTTPServer):
    """The stdlib threaded server with a real listen backlog.

    socketserver listens with a backlog of 5: a burst of connections (ImgKit sends up
    to 256 webhooks at once, downloads a dozen sources at once) overflows it, the kernel
    drops the extra SYNs and the clients retry them after TCP's 1 s timeout. That second
    showed up in tests/bench/bench_pipeline.py as runs at 53% instead of ~68%, with
    normal CPU per image and the last webhooks a second late. Servers in production
    listen with hundreds (nginx: 511)."""

    request_queue_size = 1024
    daemon_threads = True


class HTTPTestServer:
    """A threaded HTTP server on an ephemeral loopback port, with a route table."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._httpd = LoopbackHTTPServer((host, 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> HTTPTestServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="test-http-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HTTPTestServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- addresses ----------------------------------------------------------------------
    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    # --- routes ---------------------------------------------------------------------------
    def route(self, path: str, handler: Handler) -> str:
        """Serve `handler` at `path` (matched with its query first, then without); returns the URL."""
        with self._lock:
            self._routes[path] = handler
        return self.url(path)

    def image(self, path: str, data: bytes, content_type: str = "image/png", **reply: Any) -> str:
        """Serve `data` at `path`; `reply` takes any other `Reply` field (headers, delay...)."""
        return self.route(path, Reply(body=data, content_type=content_type, **reply))

    def html(self, path: str, text: str, content_type: str | None = "text/html; charset=utf-8",
             **reply: Any) -> str:
        return self.route(path, Reply(body=text.encode(), content_type=content_type, **reply))

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        """Redirect `path` to `location` (absolute, or a path on this server)."""
        return self.route(path, Reply(status=status, content_type=None, headers={"Location": location}))

    def status(self, path: str, status: int, body: bytes = b"") -> str:
        return self.route(path, Reply(status=status, body=body, content_type="text/plain"))

    def huge(self, path: str, size: int, *, content_length: bool = True, chunk: int = 64 * 1024,
             content_type: str = "image/jpeg") -> str:
        """`size` bytes (starting with a JPEG signature) produced lazily, chunk by chunk."""
        def chunks() -> Iterator[bytes]:
            sent = 0
            while sent < size:
                n = min(chunk, size - sent)
                yield (b"\xff\xd8\xff" + b"\0" * (n - 3)) if sent == 0 and n >= 3 else b"\0" * n
                sent += n
        headers = {"Content-Length": str(size)} if content_length else {}
        return self.route(path, Reply(body=chunks, content_type=content_type, headers=headers,
                                      content_length=content_length))

    def slow(self, path: str, *, delay: float = 0.0, chunks: int = 10, chunk_delay: float = 0.5,
             content_type: str = "image/jpeg") -> str:
        """A reply that waits `delay`, then drips `chunks` small chunks `chunk_delay` apart."""
        return self.route(path, Reply(body=lambda: (b"\xff\xd8\xff" + b"\0" * 97 for _ in range(chunks)),
                                      content_type=content_type, delay=delay, chunk_delay=chunk_delay,
                                      content_length=False))

    # --- what was asked -------------------------------------------------------------------
    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path or r.path.split("?", 1)[0] == path)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._routes.clear()

    def _record_and_find(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            handler = self._routes.get(request.path) or self._routes.get(urlsplit(request.path).path)
        if handler is None:
            return Reply(status=404, body=b"not found", content_type="text/plain")
        return handler(request) if callable(handler) else handler


def _make_handler(server: HTTPTestServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self._answer(send_body=True)

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

        def _answer(self, *, send_body: bool) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            request = RecordedRequest(self.command, self.path, headers)
            reply = server._record_and_find(request)
            try:
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.body() if callable(reply.body) else reply.body
                self.send_response(reply.status)
                if reply.content_type:
                    self.send_header("Content-Type", reply.content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                explicit_length = any(k.lower() == "content-length" for k in reply.headers)
                if isinstance(body, bytes):
                    if reply.content_length and not explicit_length:
                        self.send_header("Content-Length", str(len(body)))
                    chunks: Iterable[bytes] = [body] if body else []
                else:
                    chunks = body
                chunked = not reply.content_length and not explicit_length
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if not send_body:
                    return
                for i, chunk in enumerate(chunks):
                    if i and reply.chunk_delay:
                        time.sleep(reply.chunk_delay)
                    if chunked:
                        if chunk:
                            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    else:
                        self.wfile.write(chunk)
                    self.wfile.flush()
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                self.close_connection = True

    return _Handler


@pytest.fixture
def http_server() -> Iterator[HTTPTestServer]:
    """A started `HTTPTestServer`, stopped after the test."""
    with HTTPTestServer() as server:
        yield server
