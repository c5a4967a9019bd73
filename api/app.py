"""The FastAPI application: routers, error shape, limits, and the runtime's lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api import images, similar
from api.annotations import router as annotations_router
from api.errors import install_error_handlers
from api.limits import BodyLimitMiddleware, RateLimiter
from api.render import build_render_router, check_signature
from api.screenshot_proxy import build_screenshot_router
from imaging.fetch import Fetched, fetch
from imaging.source_cache import CachedSource
from imgkit import __version__
from imgkit.runtime import Mode, Runtime, open_runtime
from imgkit.settings import Settings


class RuntimeDeps:
    """What the render and screenshot routers need, served by the running runtime: the
    source cache (fetching through the one guarded downloader) and the accounts' secrets."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    async def source(self, url: str) -> CachedSource:
        runtime = self.runtime

        async def download(target: str) -> Fetched:
            return await fetch(target, runtime.settings, runtime.context.fetch_client)

        return await runtime.sources.get_or_fetch(url, download)

    async def signing_secrets(self, account_id: str) -> list[str]:
        account = await self.runtime.accounts.get(account_id)
        return list(account.signing_secrets) if account else []

    async def verify_signature(self, request: Request) -> None:
        await check_signature(request, self)


def create_app(settings: Settings, mode: Mode = Mode.dev, runtime: Runtime | None = None,
               on_started: Callable[[Runtime], Awaitable[None]] | None = None) -> FastAPI:
    """Build the app; the runtime (storage, bus, agents) opens with the app and closes with it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or await open_runtime(settings, mode)
        app.state.runtime = rt
        await rt.start()
        if on_started is not None:
            await on_started(rt)
        try:
            yield
        finally:
            shards = getattr(app.state, "similarity_index", None)
            if shards is not None:
                await shards.aclose()
            await rt.stop()

    app = FastAPI(title="ImgKit", version=__version__, lifespan=lifespan,
                  description="Image metadata, perceptual hashes, near-duplicates, signed thumbnails.")
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    app.include_router(images.router)
    app.include_router(similar.router)
    app.include_router(annotations_router)
    deps = RuntimeDeps(app, settings)
    app.include_router(build_render_router(deps, settings))
    app.include_router(build_screenshot_router(deps))

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        rt: Runtime = app.state.runtime
        await rt.db.query("SELECT 1")
        return JSONResponse({"status": "ok", "mode": rt.mode.value})

    return app
