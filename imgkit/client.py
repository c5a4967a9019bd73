"""The CLI's side of the REST API: submit, import, get (a client of a running server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from tqdm import tqdm

from imgkit.errors import ConfigError, ImgKitError
from imgkit.settings import Settings


def resolve_api_key(settings: Settings) -> str:
    if settings.api_key:
        return settings.api_key
    path = settings.data_dir / "dev-account.json"
    if path.exists():
        return str(json.loads(path.read_text())["api_key"])
    raise ConfigError(f"no API key: set IMGKIT_API_KEY, or run `imgkit dev` once to create {path}")


class ApiError(ImgKitError):
    code = "api_error"


@dataclass
class Client:
    base_url: str
    api_key: str
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=30.0,
                                      headers={"Authorization": f"Bearer {self.api_key}"})

    async def close(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        for _attempt in range(6):
            try:
                response = await self.http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise ApiError(f"cannot reach ImgKit at {self.base_url}: {exc}", status=503) from exc
            if response.status_code == 429:  # rate limited: wait as told, then try again
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                continue
            if response.status_code >= 400:
                try:
                    error = response.json()["error"]
                    raise ApiError(error["message"], code=error["code"], status=response.status_code)
                except (ValueError, KeyError):
                    raise ApiError(f"HTTP {response.status_code}: {response.text[:200]}",
                                   status=response.status_code) from None
            return dict(response.json())
        raise ApiError("still rate limited after several attempts", status=429)

    async def submit(self, url: str, **options: Any) -> dict[str, Any]:
        return await self._call("POST", "/images", json={"url": url, **options})

    async def get(self, image_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/images/{image_id}")


@dataclass
class ImportReport:
    submitted: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (url, error)


async def submit_many(client: Client, urls: Iterable[str], concurrency: int,
                      progress: bool = True) -> ImportReport:
    """Submit every URL with at most `concurrency` requests in flight, with a progress bar."""
    todo = [u.strip() for u in urls if u.strip() and not u.strip().startswith("#")]
    report = ImportReport()
    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(todo), unit="url", disable=not progress, desc="submitting")

    async def one(url: str) -> None:
        async with gate:
            try:
                report.submitted.append(await client.submit(url))
            except ImgKitError as exc:
                report.failed.append((url, exc.message))
            finally:
                bar.update(1)

    async with asyncio.TaskGroup() as tg:
        for url in todo:
            tg.create_task(one(url))
    bar.close()
    return report
