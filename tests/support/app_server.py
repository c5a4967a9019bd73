"""ImgKit's API on a real uvicorn in a background thread, for end-to-end tests.

chDB opens one data directory per process, so only one of these may run at a
time in a test process; `stop()` closes storage before the next starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from imgkit.runtime import Mode, Runtime
from imgkit.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppServer:
    def __init__(self, settings: Settings, mode: Mode,
                 on_started: Callable[[Runtime], Awaitable[None]] | None = None) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None

        self.runtime_loop: asyncio.AbstractEventLoop | None = None

        async def started(runtime: Runtime) -> None:
            self.runtime_loop = asyncio.get_running_loop()
            self.runtime = runtime
            if on_started:
                await on_started(runtime)

        app = create_app(settings, mode, on_started=started)
        config = uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_config=None,
                                lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def start(self, timeout: float = 90.0) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.started and self.runtime is not None:
                return self
            if not self.thread.is_alive():
                raise RuntimeError("ImgKit's server died while starting; see the log above")
            time.sleep(0.05)
        raise TimeoutError(f"ImgKit did not start within {timeout} s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        if self.thread.is_alive():
            raise RuntimeError("ImgKit's server did not stop within 60 s")

    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def call(self, coro_fn: Callable[[Runtime], Coroutine[Any, Any, Any]]) -> Any:
        """Run a coroutine on the server's own event loop (storage lives there)."""
        assert self.runtime is not None and self.runtime_loop is not None
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(
            coro_fn(self.runtime), self.runtime_loop)
        return future.result(timeout=60)
