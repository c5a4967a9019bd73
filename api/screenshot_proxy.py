"""Public `/screenshot` and `/card/{template}` endpoints: check the signature, forward, stream back.

Why a proxy and not the renderer in the API process: Chromium lives in its own
service (`imgkit screenshot`, see `api/screenshot/`), which trusts its callers
and so must not be exposed. The API is the only door: it verifies the signed
URL (`deps.verify_signature`), forwards the known parameters to
`settings.screenshot_url`, and streams the answer back without buffering it.
A 200 gets long-lived caching headers (signed render URLs are immutable: a
different picture needs a different URL) and the service's content ETag.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from imgkit.errors import ImgKitError
from imgkit.logging import get_logger
from imgkit.settings import Settings

log = get_logger(__name__)

CACHE_FOREVER = "public, max-age=31536000, immutable"
RENDER_PARAMS = ("url", "w", "h", "format", "q", "full_page", "wait")
CARD_PARAMS = ("title", "subtitle", "image", "w", "h", "format", "q")
#: Headers of the service's answer passed on to the client.
_PASSED_HEADERS = ("content-type", "content-length", "content-encoding", "etag")


class ScreenshotDeps(Protocol):
    """What the router needs from the application (the lead wires these)."""

    settings: Settings

    def verify_signature(self, request: Request) -> Any:
        """Raise a 403 error (an `ImgKitError` or `HTTPException`) unless the URL is signed; may be async."""


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers={"Cache-Control": "no-store"})


def _fallback_etag(request: Request) -> str:
    """A weak validator from the signed request itself, if the service sent no ETag."""
    canonical = request.url.path + "?" + "&".join(sorted(f"{k}={v}" for k, v in request.query_params.items()
                                                        if k != "s"))
    return 'W/"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


def build_screenshot_router(deps: ScreenshotDeps) -> APIRouter:
    """The router for the public API; one pooled httpx client per router, closed at shutdown."""
    settings = deps.settings
    state: dict[str, httpx.AsyncClient] = {}

    def client() -> httpx.AsyncClient:
        if "client" not in state:
            # Connect fast (a dead service must answer 503 quickly); read long enough for a queued
            # render: the service's own queue wait plus its render timeout, plus a margin.
            timeout = httpx.Timeout(connect=3.0, read=settings.screenshot_timeout * 2 + 5,
                                    write=10.0, pool=10.0)
            state["client"] = httpx.AsyncClient(base_url=settings.screenshot_url.rstrip("/"),
                                                timeout=timeout, follow_redirects=False,
                                                limits=httpx.Limits(max_connections=32))
        return state["client"]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if "client" in state:
            await state.pop("client").aclose()

    router = APIRouter(lifespan=lifespan)

    async def verify(request: Request) -> JSONResponse | None:
        try:
            result = deps.verify_signature(request)
            if inspect.isawaitable(result):
                await result
        except ImgKitError as exc:
            return _error(exc.status, exc.code, exc.message)
        return None

    async def forward(request: Request, path: str, names: tuple[str, ...]) -> Response:
        denied = await verify(request)
        if denied is not None:
            return denied
        params = httpx.QueryParams([(k, v) for k, v in request.query_params.multi_items() if k in names])
        upstream = client().build_request("GET", path, params=params)
        try:
            answer = await client().send(upstream, stream=True)
        except httpx.TimeoutException:
            return _error(504, "screenshot_timeout", "the screenshot service did not answer in time")
        except httpx.TransportError as exc:
            log.warning("screenshot service unreachable", extra={"url": settings.screenshot_url,
                                                                 "error": str(exc)})
            return _error(503, "service_unavailable",
                          f"the screenshot service at {settings.screenshot_url} is not reachable; "
                          "is `imgkit screenshot` running?")
        headers = {k: answer.headers[k] for k in _PASSED_HEADERS if k in answer.headers}
        if answer.status_code == 200:
            headers["Cache-Control"] = CACHE_FOREVER
            headers.setdefault("etag", _fallback_etag(request))
        else:
            headers["Cache-Control"] = "no-store"
        return StreamingResponse(answer.aiter_raw(), status_code=answer.status_code, headers=headers,
                                 background=BackgroundTask(answer.aclose))

    @router.get("/screenshot", summary="Screenshot of a web page (signed URL)")
    async def screenshot(request: Request) -> Response:
        return await forward(request, "/render", RENDER_PARAMS)

    @router.get("/card/{template}", summary="Social card rendered from a template (signed URL)")
    async def card(request: Request, template: str) -> Response:
        if not template.replace("-", "").replace("_", "").isalnum():
            return _error(404, "unknown_template", f"unknown card template {template!r}")
        return await forward(request, f"/card/{template}", CARD_PARAMS)

    return router
