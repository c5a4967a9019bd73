"""Stage 3: tell the client, with a signed webhook, once the result is stored.

Standard Webhooks: `webhook-id` (the event id, stable across retries, for the
receiver to deduplicate on), `webhook-timestamp`, `webhook-signature`
(`v1,<base64 HMAC-SHA256>` with the account's secret). A failed attempt goes to
the retry topic with a due time (exponential backoff with full jitter); after
`webhook_max_attempts` it goes to the dead-letter topic. Every attempt is
logged in ClickHouse (`webhook_attempts`).

Images (`ImageStored`) and annotation requests (`AnnotationStored`) share this one
signing, sending and retry path; only the payload's `data` differs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import aiohttp
from standardwebhooks.webhooks import Webhook

from agents.annotate.store import AnnotationStore
from agents.context import AgentContext
from agents.store import ImageStore
from imaging.fetch import request_target
from imaging.guard import check_url
from imgkit.errors import ImgKitError
from imgkit.ids import new_id
from schemas.events import AnnotationStored, ImageStored, WebhookDelivery
from streams.topology import Emit, Topic

log = logging.getLogger("imgkit.agents.webhooks")

ATTEMPT_LOG_SPACING = 0.25
"""Least seconds between inserts of attempt rows (see agents.store.PIPELINE_SPACING):
deliveries run many at once (agents.topology.WEBHOOKS_IN_FLIGHT) and share them. Not
longer: a delivery's record is acknowledged once its row is stored, and the next webhooks
of its partition wait for that (1 s here sent a partition's webhooks once a second).
No `quiet`: deliveries come in bursts (one per stored batch), which would end the
spacing after every burst."""

RESPONSE_READ_BYTES = 64 * 1024
"""How much of a receiver's answer is read (and ignored): only the status counts."""

MAX_WAIT_IN_AGENT = 300.0
"""A retry due later than this is re-queued instead of slept on, so a partition
never sleeps for an hour on one delivery."""


def backoff(settings_base: float, settings_max: float, attempt: int) -> float:
    """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
    return random.uniform(0, min(settings_max, settings_base * 2 ** (attempt - 1)))


def signed_headers(secret: str, event_id: str, payload: str, at: datetime) -> dict[str, str]:
    signature = Webhook(secret).sign(event_id, at, payload)
    return {"webhook-id": event_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature, "content-type": "application/json",
            "user-agent": "ImgKit-Webhooks/0.1"}


async def build_delivery(ctx: AgentContext, stored: ImageStored | AnnotationStored
                         ) -> WebhookDelivery | None:
    """The first attempt: the payload is the resource as stored, exactly what GET returns;
    for annotations, with the annotation request (its id, result and passthrough) beside it."""
    account = await ctx.accounts.get(stored.account_id)
    url = stored.webhook_url or (account.webhook_url if account else "")
    if not url:
        return None
    if isinstance(stored, ImageStored) and stored.resource is not None:
        # a result just stored: the resource travelled with the event; only annotations (of
        # a result replayed after the image was annotated) are read
        data = {**stored.resource, "annotations": await AnnotationStore.of(ctx.db).merged(
            stored.account_id, stored.image_id)}
    else:
        resource = await ImageStore.of(ctx.db).get(stored.account_id, stored.image_id)
        if resource is None:  # deleted meanwhile: nothing to announce
            return None
        data = resource.model_dump(mode="json")
    if isinstance(stored, AnnotationStored):
        request = await AnnotationStore.of(ctx.db).get(stored.account_id, stored.image_id,
                                                    stored.annotation_id)
        if request is None:
            return None
        data["annotation_request"] = request.model_dump(mode="json")
    payload = json.dumps({"type": stored.event_type, "timestamp": datetime.now(UTC).isoformat(),
                          "data": data}, separators=(",", ":"))
    return WebhookDelivery(event_id=new_id("evt"), event_type=stored.event_type,
                           account_id=stored.account_id, image_id=stored.image_id, url=url,
                           payload=payload)


async def attempt(ctx: AgentContext, delivery: WebhookDelivery) -> tuple[bool, int, str]:
    """Send once; return (delivered, HTTP status or 0, error text)."""
    account = await ctx.accounts.get(delivery.account_id)
    if account is None:
        return False, 0, "account no longer exists"
    try:
        checked = await check_url(delivery.url, allow_private=ctx.settings.webhook_allow_private)
        headers = signed_headers(account.signing_secret, delivery.event_id, delivery.payload,
                                 datetime.now(UTC))
        async with asyncio.timeout(ctx.settings.webhook_timeout), ctx.webhook_client.post(
                request_target(checked), data=delivery.payload.encode(),
                headers=headers, allow_redirects=False) as response:
            status = response.status
            # Read (a bounded amount of) the answer, so that the connection can be reused;
            # a receiver that sends more has its connection closed instead.
            remaining = RESPONSE_READ_BYTES
            while remaining > 0 and (chunk := await response.content.read(remaining)):
                remaining -= len(chunk)
    except ImgKitError as exc:
        return False, 0, exc.message
    except TimeoutError:
        return False, 0, f"timed out after {ctx.settings.webhook_timeout:g} s"
    except aiohttp.ClientError as exc:
        return False, 0, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= status < 300:
        return True, status, ""
    return False, status, f"HTTP {status}"


async def deliver(ctx: AgentContext, delivery: WebhookDelivery, retry: Topic[WebhookDelivery],
                  dead: Topic[WebhookDelivery]) -> Sequence[Emit]:
    started = time.perf_counter()
    ok, status, error = await attempt(ctx, delivery)
    settings = ctx.settings
    final = not ok and delivery.attempt >= settings.webhook_max_attempts
    outcome = "delivered" if ok else ("dead" if final else "retry")
    await ctx.db.writer("webhook_attempts", spacing=ATTEMPT_LOG_SPACING).write({
        "account_id": delivery.account_id, "event_id": delivery.event_id,
        "event_type": delivery.event_type, "image_id": delivery.image_id, "url": delivery.url,
        "attempt": delivery.attempt, "status_code": status, "outcome": outcome, "error": error,
        "duration_ms": (time.perf_counter() - started) * 1000, "at": datetime.now(UTC)})
    log.info("webhook attempt", extra={"event_id": delivery.event_id, "attempt": delivery.attempt,
                                       "outcome": outcome, "status": status, "error": error})
    if ok:
        return []
    if final:
        return [Emit(dead, delivery.model_copy(update={"last_error": error}))]
    delay = backoff(settings.webhook_backoff_base, settings.webhook_backoff_max, delivery.attempt)
    again = delivery.model_copy(update={
        "attempt": delivery.attempt + 1, "last_error": error,
        "not_before": datetime.now(UTC) + timedelta(seconds=delay)})
    return [Emit(retry, again)]


async def on_stored(ctx: AgentContext, stored: ImageStored | AnnotationStored,
                    retry: Topic[WebhookDelivery], dead: Topic[WebhookDelivery]) -> Sequence[Emit]:
    delivery = await build_delivery(ctx, stored)
    if delivery is None:
        return []
    return await deliver(ctx, delivery, retry, dead)


async def on_retry(ctx: AgentContext, delivery: WebhookDelivery, retry: Topic[WebhookDelivery],
                   dead: Topic[WebhookDelivery]) -> Sequence[Emit]:
    wait = (delivery.not_before - datetime.now(UTC)).total_seconds()
    if wait > MAX_WAIT_IN_AGENT:
        await asyncio.sleep(MAX_WAIT_IN_AGENT)
        return [Emit(retry, delivery)]
    if wait > 0:
        await asyncio.sleep(wait)
    return await deliver(ctx, delivery, retry, dead)
