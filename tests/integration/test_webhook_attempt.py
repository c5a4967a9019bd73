"""One webhook attempt against real receivers that misbehave: slow, redirecting, chatty,
or at an address the guard refuses. Every outcome is a (delivered, status, error) the
webhook agent can log and retry on; none raises, none hangs past the timeout."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents.context import AgentContext
from agents.webhooks import attempt
from imaging.fetch import guarded_session, make_client
from imaging.source_cache import SourceCache
from imgkit.accounts import AccountStore
from imgkit.db import Database
from imgkit.settings import load_settings
from schemas.events import WebhookDelivery
from schemas.migrate import migrate
from tests.support.http_server import HTTPTestServer


@dataclass
class Setup:
    ctx: AgentContext
    account_id: str
    web: HTTPTestServer


async def _setup(tmp_path: Path, *, allow_private: bool) -> AsyncIterator[Setup]:
    settings = load_settings(data_dir=tmp_path / "data", webhook_timeout=1.0,
                             webhook_allow_private=allow_private)
    db = Database(settings.clickhouse_url)
    await migrate(db)
    accounts = AccountStore(db)
    created = await accounts.create("hooks")
    sources = SourceCache.from_settings(settings)
    ctx = AgentContext(settings=settings, db=db, accounts=accounts, sources=sources,
                       fetch_client=make_client(settings),
                       webhook_client=guarded_session(allow_private=allow_private,
                                                      timeout=settings.webhook_timeout))
    web = HTTPTestServer().start()
    try:
        yield Setup(ctx, created.account.id, web)
    finally:
        web.stop()
        await ctx.fetch_client.close()
        await ctx.webhook_client.close()
        sources.close()
        db.close()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async for value in _setup(tmp_path, allow_private=True):
        yield value


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Setup]:
    async for value in _setup(tmp_path, allow_private=False):
        yield value


def delivery(setup: Setup, url: str) -> WebhookDelivery:
    return WebhookDelivery(event_id="evt_1", event_type="image.completed", account_id=setup.account_id,
                           image_id="img_1", url=url, payload='{"type":"image.completed"}')


async def test_delivered_and_signed(setup: Setup) -> None:
    url = setup.web.status("/hook", 204)
    assert await attempt(setup.ctx, delivery(setup, url)) == (True, 204, "")
    [request] = setup.web.requests
    assert request.method == "POST"
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(request.headers)
    assert request.headers["content-type"] == "application/json"


async def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(setup: Setup) -> None:
    url = setup.web.slow("/hook", delay=3.0)
    started = time.monotonic()
    ok, status, error = await attempt(setup.ctx, delivery(setup, url))
    assert (ok, status) == (False, 0)
    assert "timed out" in error
    assert time.monotonic() - started < 2.5


async def test_redirects_are_not_followed(setup: Setup) -> None:
    target = setup.web.status("/elsewhere", 204)
    url = setup.web.redirect("/hook", target)
    assert await attempt(setup.ctx, delivery(setup, url)) == (False, 302, "HTTP 302")
    assert setup.web.hits("/elsewhere") == 0


async def test_a_long_answer_is_not_read_to_the_end(setup: Setup) -> None:
    """Only the status counts; a receiver answering 50 MB must not hold the agent."""
    url = setup.web.huge("/hook", 50_000_000, content_type="text/plain")
    started = time.monotonic()
    assert await attempt(setup.ctx, delivery(setup, url)) == (True, 200, "")
    assert time.monotonic() - started < 2.0


async def test_a_private_address_is_refused_before_any_request(guarded: Setup) -> None:
    url = guarded.web.status("/hook", 204)
    ok, status, error = await attempt(guarded.ctx, delivery(guarded, url))
    assert (ok, status) == (False, 0)
    assert "non-public address" in error, error
    assert guarded.web.requests == []
