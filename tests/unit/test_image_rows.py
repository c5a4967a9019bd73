"""The rows of `images` through an image's life: pending → processing → completed/failed.

Every row of an image carries what the request asked (url, passthrough, options, webhook
URL, idempotency key): `images` is a ReplacingMergeTree read with FINAL, so whichever
row is the latest is all a reader sees, and a field one row leaves out is lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.context import AgentContext
from agents.process import failed, process_image
from agents.store import ImageStore, pending_row, processed_row, processing_row, store_batch
from agents.topology import IMAGES_HASHES, IMAGES_PROCESSED, IMAGES_STORED
from imaging.fetch import guarded_session, make_client
from imaging.source_cache import SourceCache
from imgkit.accounts import AccountStore
from imgkit.db import Database
from imgkit.errors import FetchError
from imgkit.ids import new_id
from imgkit.runtime import Mode, open_runtime
from imgkit.settings import load_settings
from schemas.events import ExtractOptions, ImageProcessed, ImageRequested
from schemas.migrate import migrate
from tests.support.http_server import HTTPTestServer
from tests.support.images import jpeg

ASKED = ("created_at", "url", "passthrough", "options", "webhook_url", "idempotency_key")


def request(**fields: object) -> ImageRequested:
    now = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    values: dict[str, object] = dict(
        image_id=new_id("img"), account_id="acc_test", url="https://example.com/a.jpg",
        options=ExtractOptions(xmp=False), passthrough={"order": 42, "tags": ["a"]},
        webhook_url="https://hooks.example/imgkit", requested_at=now, created_at=now,
        idempotency_key="order-42")
    values.update(fields)
    return ImageRequested.model_validate(values)


def test_processing_row_keeps_what_the_request_asked() -> None:
    asked = request()
    pending = pending_row(asked)
    processing = processing_row(asked)
    assert processing["status"] == "processing" and pending["status"] == "pending"
    assert {k: processing[k] for k in ASKED} == {k: pending[k] for k in ASKED}
    assert json.loads(processing["passthrough"]) == {"order": 42, "tags": ["a"]}
    assert processing["webhook_url"] == "https://hooks.example/imgkit"
    assert processing["idempotency_key"] == "order-42"
    assert ExtractOptions.model_validate_json(processing["options"]) == ExtractOptions(xmp=False)
    assert processing["version"] > pending["version"]
    assert processing["updated_at"] >= processing["created_at"]
    assert processing_row(asked, version=7)["version"] == 7


def test_processed_row_keeps_the_idempotency_key() -> None:
    asked = request()
    event = failed(asked, FetchError("the server answered 404", code="fetch_http_404"), [])
    assert event.idempotency_key == "order-42"
    row = processed_row(event)
    assert row["idempotency_key"] == "order-42" and row["status"] == "failed"
    assert row["version"] > processing_row(asked, version=event.revision - 1)["version"]


def test_records_without_an_idempotency_key_still_decode() -> None:
    old = {"image_id": "img_2Jb0f0vJ6t3mZ7Q6ZyQ9oYb3x1T", "account_id": "acc_x", "url": "https://e.x/a.jpg"}
    requested = ImageRequested.from_bytes(json.dumps(old))
    assert requested.idempotency_key is None and pending_row(requested)["idempotency_key"] == ""
    processed = ImageProcessed.from_bytes(json.dumps({**old, "status": "failed"}))
    assert processed.idempotency_key is None and processed_row(processed)["idempotency_key"] == ""


@dataclass
class Agent:
    ctx: AgentContext
    images: ImageStore
    web: HTTPTestServer


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    settings = load_settings(data_dir=tmp_path / "data", fetch_allow_private=True, fetch_timeout=10.0)
    db = Database(settings.clickhouse_url)
    await migrate(db)
    sources = SourceCache.from_settings(settings)
    fetch_client = make_client(settings)
    ctx = AgentContext(settings=settings, db=db, accounts=AccountStore(db), sources=sources,
                       fetch_client=fetch_client,
                       webhook_client=guarded_session(allow_private=True))
    web = HTTPTestServer().start()
    try:
        yield Agent(ctx, ImageStore.of(db), web)
    finally:
        web.stop()
        await fetch_client.close()
        await ctx.webhook_client.close()
        sources.close()
        db.close()


async def test_process_agent_writes_processing_during_the_download(agent: Agent) -> None:
    agent.web.image("/slow.jpg", jpeg(120, 80), content_type="image/jpeg", delay=1.0)
    asked = request(url=agent.web.url("/slow.jpg"))
    await agent.images.write_pending(asked)

    task = asyncio.create_task(process_image(agent.ctx, asked, IMAGES_PROCESSED, IMAGES_HASHES))
    seen = None
    while not task.done():
        seen = await agent.images.get_row(asked.account_id, asked.image_id)
        if seen is not None and seen["status"] == "processing":
            break
        await asyncio.sleep(0.02)
    assert seen is not None and seen["status"] == "processing", "not marked while downloading"
    assert not task.done(), "the processing row must not wait for the download"
    shown = ("url", "passthrough", "options", "webhook_url")  # IMAGE_COLUMNS; the key is below
    assert {k: seen[k] for k in shown} == {k: pending_row(asked)[k] for k in shown}
    processing = await agent.images.get(asked.account_id, asked.image_id)
    assert processing is not None and processing.status == "processing"
    assert processing.passthrough == {"order": 42, "tags": ["a"]}
    found = await agent.images.find_by_idempotency_key(asked.account_id, "order-42")
    assert found is not None and found.id == asked.image_id

    emits = await task
    [result] = [e.record for e in emits if isinstance(e.record, ImageProcessed)]
    assert result.status == "completed" and result.idempotency_key == "order-42"
    await store_batch(agent.images, [result], IMAGES_STORED)
    done = await agent.images.get(asked.account_id, asked.image_id)
    assert done is not None and done.status == "completed", "the result must replace `processing`"
    again = await agent.images.find_by_idempotency_key(asked.account_id, "order-42")
    assert again is not None and again.id == asked.image_id and again.status == "completed"
    unfinished = await agent.images.unfinished()
    assert asked.image_id not in [r["id"] for r in unfinished]


async def test_a_late_processing_row_neither_holds_nor_undoes_the_result(
        agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    """The result is emitted without waiting for the `processing` row, and that row, landing
    after the result is stored, does not turn the image back to `processing`."""
    agent.web.image("/fast.jpg", jpeg(120, 80), content_type="image/jpeg")
    asked = request(url=agent.web.url("/fast.jpg"))
    await agent.images.write_pending(asked)
    release = asyncio.Event()
    landed = asyncio.Event()
    real = ImageStore.write_processing

    async def held(self: ImageStore, req: ImageRequested, version: int | None = None) -> None:
        await release.wait()                           # a batch still waiting out its spacing
        await real(self, req, version)
        landed.set()

    monkeypatch.setattr(ImageStore, "write_processing", held)
    emits = await asyncio.wait_for(
        process_image(agent.ctx, asked, IMAGES_PROCESSED, IMAGES_HASHES), timeout=30)
    [result] = [e.record for e in emits if isinstance(e.record, ImageProcessed)]
    assert result.status == "completed" and not landed.is_set()
    await store_batch(agent.images, [result], IMAGES_STORED)
    release.set()
    await asyncio.wait_for(landed.wait(), timeout=10)
    done = await agent.images.get(asked.account_id, asked.image_id)
    assert done is not None and done.status == "completed" and done.checksum == result.checksum


async def test_unfinished_images_keep_their_idempotency_key(agent: Agent) -> None:
    asked = request()
    await agent.images.write_processing(asked)
    [row] = await agent.images.unfinished()
    assert row["id"] == asked.image_id and row["idempotency_key"] == "order-42"
    assert row["webhook_url"] == asked.webhook_url and json.loads(row["passthrough"]) == asked.passthrough


async def test_resubmitted_images_keep_their_idempotency_key(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """After a crash of the embedded bus, `imgkit dev` submits unfinished images again: the
    resubmitted request carries the key, so the rows it leads to keep it too."""
    runtime = await open_runtime(load_settings(data_dir=tmp_path / "data"), Mode.dev)
    try:
        asked, other = request(), request(idempotency_key=None, passthrough=None, webhook_url=None)
        await runtime.images.write_pending(other)
        await runtime.images.write_processing(asked)
        sent: list[ImageRequested] = []

        async def submit(record: ImageRequested) -> None:
            sent.append(record)

        monkeypatch.setattr(runtime, "submit", submit)
        await runtime.resubmit_unfinished()
        again = {r.image_id: r for r in sent}
        assert set(again) == {asked.image_id, other.image_id}
        assert again[asked.image_id].idempotency_key == "order-42"
        assert again[asked.image_id].passthrough == asked.passthrough
        assert again[asked.image_id].webhook_url == asked.webhook_url
        assert again[asked.image_id].options == asked.options
        assert again[other.image_id].idempotency_key is None
    finally:
        await runtime.stop()


async def test_a_deleted_image_stays_deleted_when_its_result_arrives_later(agent: Agent) -> None:
    asked = request()
    await agent.images.write_processing(asked)
    assert await agent.images.delete("acc_test", asked.image_id)
    # the pipeline was still working on it: its result is stored after the deletion
    result = failed(asked, FetchError("the server answered 404", code="fetch_http_404"), [])
    await store_batch(agent.images, [result], IMAGES_STORED)
    assert await agent.images.get("acc_test", asked.image_id) is None
    assert await agent.images.unfinished() == []


async def test_the_stored_event_carries_the_resource_a_read_returns(agent: Agent) -> None:
    asked = request()
    result = failed(asked, FetchError("the server answered 404", code="fetch_http_404"), [])
    [emit] = await store_batch(agent.images, [result], IMAGES_STORED)
    announced = emit.record.resource  # type: ignore[attr-defined]
    stored = await agent.images.get("acc_test", asked.image_id)
    assert stored is not None and announced == stored.model_dump(mode="json")
    assert announced["passthrough"] == {"order": 42, "tags": ["a"]}
