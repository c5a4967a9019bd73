"""Public `/thumbnail` and `/proxy`: signed URLs, rendered or original images, cacheable forever.

Thin on purpose (the work is in `imaging/render/`): check the signature, parse
the options, get the source, answer from the client's cache (`If-None-Match`)
or render. A signed render URL is immutable — a different picture needs a
different URL — so a 200 is cacheable for a year by browsers, CDNs and the
nginx cache in front (deploy/nginx/imgkit.conf), and its strong ETag is the
hash of what decides the bytes: the canonical request, the source's sha256,
the negotiated format variant, and the renderer's version.

The order of checks is part of the contract: the signature first (an unsigned
request costs one HMAC, never a download), then the options (a bad request
never downloads), then the source, then the render. The query parameters are
declared for the OpenAPI document only, all optional, and read raw from the
request: FastAPI's own validation would otherwise answer a missing signature
with 422 before the signature check could answer 403.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from imaging.render import Rendered, RenderOptions, parse_options, render
from imaging.render.decoded import DecodedCache
from imaging.render.options import OutputFormat
from imaging.sniff import sniff_mime
from imgkit.errors import BadRequest, Forbidden, ImageError, ImgKitError
from imgkit.logging import get_logger
from imgkit.settings import Settings, get_settings
from imgkit.signing import ACCOUNT_PARAM, SIGNATURE_PARAM, canonical, verify

log = get_logger(__name__)

#: Bump when the renderer's output changes for the same request, so ETags change with it.
RENDER_VERSION = "1"
CACHE_FOREVER = "public, max-age=31536000, immutable"
#: Parameters that are the API's, not the renderer's.
_API_PARAMS = frozenset({"url", ACCOUNT_PARAM, SIGNATURE_PARAM})
#: What /proxy serves: raster images only (SVG can carry scripts that would run on our origin).
_PROXY_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif",
                          "image/heic", "image/heif", "image/tiff", "image/bmp", "image/jxl"})


class SourceLike(Protocol):
    """What the router needs of a cached source (imaging.source_cache.CachedSource fits)."""

    @property
    def sha256(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def data(self) -> bytes | None:
        """The bytes, when they are in memory already (just downloaded); else None: read `path`."""
        ...


class RenderDeps(Protocol):
    """What the application provides to the render router."""

    async def source(self, url: str) -> SourceLike:
        """The downloaded source for `url` (from the source cache, fetching it when missing).

        Raises an ImgKitError (FetchError, ImageError...) when it cannot be had.
        """
        ...

    async def signing_secrets(self, account_id: str) -> list[str]:
        """The account's active signing secrets (current first, at most two); [] if unknown."""
        ...


def _error(exc: ImgKitError) -> JSONResponse:
    if exc.status >= 500:
        log.error("render request failed", extra={"code": exc.code, "detail": str(exc)})
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status,
                        headers={"Cache-Control": "no-store"})


def _etag(*parts: str) -> str:
    return '"' + hashlib.sha256("\n".join((RENDER_VERSION, *parts)).encode()).hexdigest()[:40] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: `*`, or any listed tag equal by weak comparison."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in if_none_match.split(","))


async def check_signature(request: Request, deps: RenderDeps) -> list[tuple[str, str]]:
    """The request's parameters once its signature is verified; Forbidden otherwise."""
    pairs = list(request.query_params.multi_items())
    signatures = [v for k, v in pairs if k == SIGNATURE_PARAM]
    accounts = [v for k, v in pairs if k == ACCOUNT_PARAM]
    if len(signatures) != 1 or not signatures[0]:
        raise Forbidden("this URL is not signed: parameter s is missing (sign it with `imgkit sign` "
                        "or imgkit.signing.sign_url)", code="signature_missing")
    if len(accounts) != 1 or not accounts[0]:
        raise Forbidden("this URL names no account: parameter a is missing", code="signature_missing")
    secrets = await deps.signing_secrets(accounts[0])
    # an unknown account and a wrong signature get the same answer: ids are not confirmed to strangers
    if not verify(request.url.path, pairs, signatures[0], secrets):
        raise Forbidden("the signature does not match this URL (altered, or signed with another "
                        "secret)", code="signature_invalid")
    return [(k, v) for k, v in pairs if k != SIGNATURE_PARAM]


def _source_url(pairs: list[tuple[str, str]]) -> str:
    urls = [v for k, v in pairs if k == "url"]
    if len(urls) != 1 or not urls[0]:
        raise BadRequest("parameter url is required, once: the address of the source image",
                         parameter="url")
    return urls[0]


async def _render(deps: RenderDeps, url: str, source: SourceLike, options: RenderOptions,
                  settings: Settings, decoded: DecodedCache) -> Rendered:
    """Render `source`: from the bytes just downloaded, or else from the cache file, which is
    read only if the decoded cache cannot serve the render.

    A source evicted between the lookup and the read is fetched again, once.
    """
    for attempt in range(2):
        if attempt:
            source = await deps.source(url)
        try:
            return await render(source.data or Path(source.path).read_bytes, options, settings,
                                source_key=source.sha256, decoded=decoded)
        except FileNotFoundError:
            if attempt:
                raise
    raise AssertionError("unreachable")


_SIGNED_RESPONSES: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match)"},
    403: {"description": "Unsigned or altered URL"},
}
"""OpenAPI answers every signed, cacheable render endpoint shares."""


def build_render_router(deps: RenderDeps, settings: Settings | None = None) -> APIRouter:
    """The router serving `/thumbnail` and `/proxy`; `settings` defaults to the process's."""
    config = settings or get_settings()
    decoded = DecodedCache(config.render_decoded_cache_bytes)  # this router's renders share it
    router = APIRouter(tags=["render"])

    @router.get("/thumbnail", summary="Thumbnail of an image (signed URL)", response_class=Response,
                responses={200: {"content": {f"image/{f}": {} for f in ("jpeg", "png", "webp", "avif")}},
                           **_SIGNED_RESPONSES,
                           422: {"description": "Bad option, or the source is not a usable image"}})
    async def thumbnail(
        request: Request,
        url: str | None = Query(None, description="Address of the source image."),
        w: str | None = Query(None, description="Box width in CSS pixels, 1..8192."),
        h: str | None = Query(None, description="Box height in CSS pixels, 1..8192."),
        fit: str | None = Query(None, description="cover (default), contain, fill or inside."),
        gravity: str | None = Query(None, description="cover: centre, north... southwest, smart, "
                                    "attention, entropy."),
        background: str | None = Query(None, description="Hex RGB/RRGGBB/RRGGBBAA: contain padding, "
                                       "JPEG alpha."),
        format: str | None = Query(None, description="jpeg, png, webp, avif or auto (default: by Accept)."),
        q: str | None = Query(None, description="Quality 1..100."),
        dpr: str | None = Query(None, description="Device pixel ratio 1..3."),
        a: str | None = Query(None, description="Account id whose secret signed the URL."),
        s: str | None = Query(None, description="Signature (HMAC-SHA256, see imgkit.signing)."),
    ) -> Response:
        try:
            pairs = await check_signature(request, deps)
            source_url = _source_url(pairs)
            options = parse_options([(k, v) for k, v in pairs if k not in _API_PARAMS],
                                    accept=request.headers.get("accept", ""),
                                    allowed_formats=config.render_formats)
            source = await deps.source(source_url)
            etag = _etag(canonical(request.url.path, pairs), source.sha256, options.variant)
            headers = _cache_headers(etag, options)
            if _matches(request.headers.get("if-none-match"), etag):
                return Response(status_code=304, headers=headers)  # no read, no render
            rendered = await _render(deps, source_url, source, options, config, decoded)
        except FileNotFoundError:
            return _error(_evicted())
        except ImgKitError as exc:
            return _error(exc)
        return Response(rendered.data, media_type=rendered.content_type, headers=headers)

    @router.get("/proxy", summary="The original image, as downloaded (signed URL)",
                response_class=Response,
                responses={**_SIGNED_RESPONSES,
                           422: {"description": "The source is not a raster image"}})
    async def proxy(
        request: Request,
        url: str | None = Query(None, description="Address of the source image."),
        a: str | None = Query(None, description="Account id whose secret signed the URL."),
        s: str | None = Query(None, description="Signature (HMAC-SHA256, see imgkit.signing)."),
    ) -> Response:
        try:
            pairs = await check_signature(request, deps)
            source_url = _source_url(pairs)
            extra = sorted({k for k, _ in pairs} - _API_PARAMS)
            if extra:
                raise BadRequest(f"/proxy takes only url, a and s (got {', '.join(extra)})")
            source = await deps.source(source_url)
            media_type = sniff_mime(await asyncio.to_thread(_head, Path(source.path)))
            if media_type not in _PROXY_TYPES:
                raise ImageError(f"the source is not a raster image ({media_type or 'unknown type'}); "
                                 "/proxy only serves JPEG, PNG, GIF, WebP, AVIF/HEIF, TIFF, BMP, JPEG XL")
            etag = _etag(canonical(request.url.path, pairs), source.sha256, "proxy")
            headers = _cache_headers(etag, None)
            if _matches(request.headers.get("if-none-match"), etag):
                return Response(status_code=304, headers=headers)
        except FileNotFoundError:
            return _error(_evicted())
        except ImgKitError as exc:
            return _error(exc)
        return FileResponse(source.path, media_type=media_type, headers=headers)

    return router


def _evicted() -> ImgKitError:
    return ImgKitError("the source was evicted while being served; retry", status=503,
                       code="source_evicted")


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(1024)


def _cache_headers(etag: str, options: RenderOptions | None) -> dict[str, str]:
    headers = {"ETag": etag, "Cache-Control": CACHE_FOREVER, "X-Content-Type-Options": "nosniff"}
    if options is not None and options.format is OutputFormat.auto:
        headers["Vary"] = "Accept"
    return headers
