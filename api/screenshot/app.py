"""The screenshot service: its own process, internal only, one warm Chromium.

Why a separate process: Chromium is heavy and crash-prone; keeping it out of
the API process means a crash or a memory spike costs screenshots, not the
whole API, and the service can run on another machine. The public API reaches
it through `api/screenshot_proxy.py`, which checks signatures; this service
checks nothing but URLs and limits, so it must listen on loopback or an
internal network only.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.screenshot.cards import render_template
from api.screenshot.netguard import BlockLog, Resolver, system_resolver
from api.screenshot.pool import BrowserPool
from imaging.guard import check_url
from imgkit.errors import BadRequest, FetchError, ImgKitError, ServiceUnavailable
from imgkit.logging import get_logger
from imgkit.settings import Settings

log = get_logger(__name__)

MIN_SIDE, MAX_SIDE = 16, 4096
MAX_FULL_PAGE_HEIGHT = 16384          # Chromium's own texture limit
MAX_FULL_PAGE_PIXELS = 32 * 1024 * 1024
MAX_WAIT_MS = 10_000
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}

Side = Annotated[int, Query(ge=MIN_SIDE, le=MAX_SIDE)]
Format = Annotated[Literal["png", "jpeg", "jpg"], Query()]
Quality = Annotated[int, Query(ge=1, le=100)]


class RenderTimeout(ImgKitError):
    """The page did not load and render within `screenshot_timeout`."""

    code = "screenshot_timeout"
    status = 504


class PageError(ImgKitError):
    """The page could not be loaded (DNS, refused connection, HTTP error status)."""

    code = "page_load_failed"
    status = 422


def _blocked(exc: FetchError) -> FetchError:
    """A refused address is a policy decision: answer 403, keep the guard's code and message."""
    if exc.code == "fetch_blocked_address":
        exc.status = 403
    return exc


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _image_response(data: bytes, fmt: str) -> Response:
    return Response(content=data, media_type=MEDIA_TYPES[fmt],
                    headers={"ETag": _etag(data), "Content-Length": str(len(data))})


def _check_navigation(blocks: BlockLog, response: Any, url: str) -> None:
    """Turn a refused or failed main document into a clear error instead of a picture of an error page."""
    nav = blocks.navigation_block()
    if nav is not None:
        raise FetchError(f"the page (or a redirect of it) points to a refused address: {nav[1]}",
                         code="fetch_blocked_address", status=403, url=nav[0])
    if response is None:
        return
    if response.headers.get("x-imgkit-blocked"):
        raise FetchError("the page redirected to a refused address", code="fetch_blocked_address",
                         status=403, url=response.url)
    if response.status >= 400:
        raise PageError(f"the page answered HTTP {response.status}", url=url, status_code=response.status)


async def _shoot(page: Page, *, fmt: str, quality: int, full_page: bool, width: int) -> bytes:
    options: dict[str, Any] = {"type": fmt, "animations": "disabled", "caret": "hide"}
    if fmt == "jpeg":
        options["quality"] = quality
    if full_page:
        height = await page.evaluate(
            "() => Math.max(document.documentElement.scrollHeight, document.body ? "
            "document.body.scrollHeight : 0)")
        limit = min(MAX_FULL_PAGE_HEIGHT, MAX_FULL_PAGE_PIXELS // width)
        options["full_page"] = True
        options["clip"] = {"x": 0, "y": 0, "width": width, "height": max(1, min(int(height), limit))}
    return await page.screenshot(**options)


class ScreenshotService:
    """The render operations, separate from HTTP so they can be timed and tested directly."""

    def __init__(self, settings: Settings, *, resolver: Resolver = system_resolver) -> None:
        self.settings = settings
        self.resolver = resolver
        self.pool = BrowserPool(settings, resolver=resolver)

    @asynccontextmanager
    async def _bounded(self, what: str, url: str) -> AsyncIterator[None]:
        """Bound the whole render by `screenshot_timeout`; map Playwright failures to typed errors."""
        timeout = self.settings.screenshot_timeout
        try:
            async with asyncio.timeout(timeout):
                yield
        except TimeoutError:
            raise RenderTimeout(f"{what} did not finish loading and rendering within {timeout:g} s",
                                url=url, timeout=timeout) from None
        except PlaywrightError as exc:
            if not self.pool.healthy:
                raise ServiceUnavailable("Chromium crashed during the render; it restarts on the next "
                                         "request", code="browser_crashed") from exc
            message = exc.message.split("\n", 1)[0]
            if "ERR_BLOCKED_BY_CLIENT" in message or "ERR_TUNNEL_CONNECTION_FAILED" in message:
                raise FetchError("the page points to a refused address", code="fetch_blocked_address",
                                 status=403, url=url) from exc
            if "Timeout" in type(exc).__name__:
                raise RenderTimeout(f"{what} did not finish within {timeout:g} s", url=url) from exc
            raise PageError(f"{what} could not be loaded: {message}", url=url) from exc

    async def render(self, url: str, *, width: int, height: int, fmt: str = "png", quality: int = 80,
                     full_page: bool = False, wait_ms: int = 0) -> bytes:
        try:
            await check_url(url, allow_private=self.settings.fetch_allow_private, resolver=self.resolver)
        except FetchError as exc:
            raise _blocked(exc) from None
        if wait_ms >= self.settings.screenshot_timeout * 1000:
            raise BadRequest(f"wait ({wait_ms} ms) must be shorter than the render timeout "
                             f"({self.settings.screenshot_timeout:g} s)", code="bad_wait")
        timeout_ms = self.settings.screenshot_timeout * 1000
        async with self.pool.page(width, height) as (page, blocks), self._bounded("the page", url):
            page.set_default_timeout(timeout_ms)
            try:
                response = await page.goto(url, wait_until="load", timeout=timeout_ms)
            except PlaywrightError:
                _check_navigation(blocks, None, url)
                raise
            _check_navigation(blocks, response, url)
            if wait_ms:
                await asyncio.sleep(wait_ms / 1000)
            return await _shoot(page, fmt=fmt, quality=quality, full_page=full_page, width=width)

    async def card(self, template: str, *, title: str, subtitle: str = "", image: str = "",
                   width: int = 1200, height: int = 630, fmt: str = "png", quality: int = 85) -> bytes:
        content = render_template(template, title=title, subtitle=subtitle, image=image,
                                  width=width, height=height)
        if image:
            try:
                await check_url(image, allow_private=self.settings.fetch_allow_private,
                                resolver=self.resolver)
            except FetchError as exc:
                raise _blocked(exc) from None
        timeout_ms = self.settings.screenshot_timeout * 1000
        async with self.pool.page(width, height) as (page, _blocks), \
                self._bounded(f"card {template!r}", image):
            page.set_default_timeout(timeout_ms)
            await page.set_content(content, wait_until="load", timeout=timeout_ms)
            return await _shoot(page, fmt=fmt, quality=quality, full_page=False, width=width)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Every failure answers `{"error": {"code", "message"}}` with the status the error carries."""

    @app.exception_handler(ImgKitError)
    async def _imgkit_error(_: Request, exc: ImgKitError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("screenshot failed", extra={"code": exc.code, "error": str(exc)})
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
            parts.append(f"{loc}: {err.get('msg')}")
        return _error(422, "bad_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "not_found" if exc.status_code == 404 else "http_error",
                      str(exc.detail))


def create_screenshot_app(settings: Settings, *, resolver: Resolver = system_resolver) -> FastAPI:
    """The service's ASGI app; Chromium is launched at startup so the first request is warm.

    `resolver` replaces DNS for the SSRF checks (tests).
    """
    service = ScreenshotService(settings, resolver=resolver)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.pool.start()
        try:
            yield
        finally:
            await service.pool.stop()

    app = FastAPI(title="ImgKit screenshot service", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    install_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if not service.pool.healthy:
            return _error(503, "browser_down", "Chromium is not running; it relaunches on the next render")
        return JSONResponse({"status": "ok", "launches": service.pool.launches,
                             "concurrency": settings.screenshot_concurrency})

    @app.get("/render")
    async def render(url: Annotated[str, Query(min_length=1, max_length=4096)], w: Side = 1280,
                     h: Side = 800, format: Format = "png", q: Quality = 80, full_page: bool = False,
                     wait: Annotated[int, Query(ge=0, le=MAX_WAIT_MS)] = 0) -> Response:
        fmt = "jpeg" if format == "jpg" else format
        data = await service.render(url, width=w, height=h, fmt=fmt, quality=q, full_page=full_page,
                                    wait_ms=wait)
        return _image_response(data, fmt)

    @app.get("/card/{template}")
    async def card(template: str, title: Annotated[str, Query(min_length=1)], subtitle: str = "",
                   image: str = "", w: Side = 1200, h: Side = 630, format: Format = "png",
                   q: Quality = 85) -> Response:
        fmt = "jpeg" if format == "jpg" else format
        data = await service.card(template, title=title, subtitle=subtitle, image=image, width=w,
                                  height=h, fmt=fmt, quality=q)
        return _image_response(data, fmt)

    return app


def serve(settings: Settings) -> None:
    """Run the service with uvicorn on `screenshot_host:screenshot_port` (what `imgkit screenshot` calls)."""
    import uvicorn

    host = settings.screenshot_host
    try:
        addr = ipaddress.ip_address(host)
        internal = not addr.is_global and not addr.is_unspecified
    except ValueError:
        internal = host == "localhost"
    if not internal:
        log.warning("the screenshot service checks no signatures: listen on loopback or an internal "
                    "network only", extra={"host": host})
    uvicorn.run(create_screenshot_app(settings), host=host, port=settings.screenshot_port,
                log_config=None, access_log=False, workers=1)
