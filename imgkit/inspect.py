"""`imgkit inspect`: the pipeline's extraction on a local file or URL, printed like the API.

It goes through the same code as the service (fetch with its guard, extract, the
storage mapping of `agents.store`), so what it prints is what a client would get.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agents.process import completed, failed
from agents.store import processed_row, to_resource
from imaging.extract import extract
from imaging.fetch import Fetched, fetch
from imgkit.errors import FetchError, ImgKitError
from imgkit.ids import new_id
from imgkit.settings import Settings
from schemas.events import ImageRequested


async def _load(target: str, settings: Settings) -> Fetched:
    if target.startswith(("http://", "https://")):
        return await fetch(target, settings)
    path = Path(target)
    if not path.is_file():
        raise FetchError(f"no such file: {target}", code="file_not_found", path=target)
    if path.stat().st_size > settings.fetch_max_bytes:
        raise FetchError(f"{target} is larger than IMGKIT_FETCH_MAX_BYTES", code="fetch_too_large")
    data = await asyncio.to_thread(path.read_bytes)
    return Fetched(url=path.resolve().as_uri(), final_url=path.resolve().as_uri(), content_type=None,
                   filename=path.name, data=data)


async def inspect_target(target: str, settings: Settings) -> dict[str, Any]:
    request = ImageRequested(image_id=new_id("img"), account_id="local", url=target)
    try:
        fetched = await _load(target, settings)
        ex = await asyncio.to_thread(extract, fetched.data, max_pixels=settings.max_pixels)
        event = completed(request, fetched, ex, [])
    except ImgKitError as exc:
        event = failed(request, exc, [])
    resource = to_resource(processed_row(event)).model_dump(mode="json", exclude={"id", "annotations"})
    return {"source": target, **resource}
