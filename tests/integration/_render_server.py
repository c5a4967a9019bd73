"""A small FastAPI app around the render router, served by a real uvicorn in a thread.

Used by the render API and nginx cache tests: the sources come from a dict, the
accounts' secrets from another, and every request that reaches the app is counted
(so a test can tell that a cache answered instead).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response

from api.render import build_render_router
from imgkit.errors import FetchError
from imgkit.settings import Settings


@dataclass
class Source:
    sha256: str
    path: Path
    data: bytes | None = None


@dataclass
class DictDeps:
    """RenderDeps over dicts: url -> bytes, account id -> secrets."""

    directory: Path
    images: dict[str, bytes] = field(default_factory=dict)
    secrets: dict[str, list[str]] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    async def source(self, url: str) -> Source:
        self.fetched.append(url)
        if url not in self.images:
            raise FetchError(f"the source answered 404: {url}", url=url)
        data = self.images[url]
        digest = hashlib.sha256(data).hexdigest()
        path = self.directory / digest
        if not path.exists():
            path.write_bytes(data)
        return Source(sha256=digest, path=path)

    async def signing_secrets(self, account_id: str) -> list[str]:
        return list(self.secrets.get(account_id, []))


class RenderServer:
    """uvicorn on 127.0.0.1, on a port the OS picks, in a daemon thread."""

    def __init__(self, deps: DictDeps, settings: Settings) -> None:
        self.requests: list[str] = []
        app = FastAPI()

        @app.middleware("http")
        async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            self.requests.append(str(request.url.path) + "?" + str(request.url.query))
            return await call_next(request)

        app.include_router(build_render_router(deps, settings))
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 20.0) -> RenderServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
