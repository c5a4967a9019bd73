"""The whole ingestion flow, over real sockets, in both run modes.

A real HTTP server on loopback serves generated and corpus images and an HTML
page with og:image; a real receiver verifies webhook signatures. The same test
body runs on the in-process bus (`dev`) and on a real Kafka broker with Faust
(`combined`: API and worker in one process, as chDB requires).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from imgkit.accounts import NewAccount
from tests.support.app_server import AppServer
from tests.support.http_server import HTTPTestServer
from tests.support.images import jpeg, png
from tests.support.stack import start_app
from tests.support.webhooks import WebhookReceiver


@dataclass
class Stack:
    app: AppServer
    web: HTTPTestServer
    hooks: WebhookReceiver
    alice: NewAccount
    bob: NewAccount


def make_stack(tmp_path: Path, kafka: str | None) -> Iterator[Stack]:
    web = HTTPTestServer().start()
    hooks = WebhookReceiver().start()
    app, alice, bob = start_app(
        tmp_path, hooks, kafka, webhook_max_attempts=3, fetch_timeout=2.0,
        fetch_max_bytes=3_000_000, max_pixels=20_000_000, rate_limit_per_minute=120)
    try:
        yield Stack(app, web, hooks, alice, bob)
    finally:
        app.stop()
        web.stop()
        hooks.stop()


@pytest.fixture(params=["dev", "kafka"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    if request.param == "dev":
        yield from make_stack(tmp_path, None)
    else:
        kafka = request.getfixturevalue("kafka_bootstrap")
        yield from make_stack(tmp_path, kafka)


def completed_event(stack: Stack, account: str, image_id: str) -> dict[str, Any]:
    deliveries = stack.hooks.wait_for(
        f"/{account}", lambda got: any(d.event["data"]["id"] == image_id for d in got), timeout=90)
    [delivery] = [d for d in deliveries if d.event["data"]["id"] == image_id and d.status == 204]
    assert delivery.verified, "webhook signature did not verify"
    return delivery.event


def test_image_flows_from_post_to_signed_webhook(stack: Stack, corpus_dir: Path) -> None:
    photo = jpeg(600, 400, orientation=6)  # stored 600x400, displayed 400x600
    stack.web.image("/photo.jpg", photo, content_type="application/octet-stream")
    stack.web.html("/page.html", '<html><head><meta property="og:image" content="/photo.jpg">'
                                 "</head><body>hi</body></html>")
    camera = (corpus_dir / "cameras" / "Canon_EOS_7D.jpg").read_bytes()
    stack.web.image("/camera.jpg", camera, content_type="image/jpeg")

    with stack.app.client(stack.alice.api_key) as api:
        posted = api.post("/images", json={"url": stack.web.url("/photo.jpg"),
                                           "passthrough": {"order": 42, "tags": ["a"]}})
        assert posted.status_code == 202, posted.text
        image = posted.json()
        assert image["status"] == "pending" and image["id"].startswith("img_")
        assert image["passthrough"] == {"order": 42, "tags": ["a"]}

        event = completed_event(stack, "alice", image["id"])
        assert event["type"] == "image.completed"
        data = event["data"]
        assert data["status"] == "completed"
        assert data["checksum"] == hashlib.sha256(photo).hexdigest()
        assert data["byte_size"] == len(photo)
        assert data["content_type"] == "image/jpeg"  # sniffed, not the server's octet-stream
        assert (data["width"], data["height"]) == (400, 600)
        assert len(data["phash"]) == 16 and len(data["dhash"]) == 16
        assert data["palette"] and abs(sum(c["share"] for c in data["palette"]) - 1) < 0.02
        assert data["filename"] == "photo.jpg"
        assert data["passthrough"] == {"order": 42, "tags": ["a"]}
        # the webhook announces what is stored: GET returns the same resource
        assert api.get(f"/images/{image['id']}").json() == data

        page = api.post("/images", json={"url": stack.web.url("/page.html")}).json()
        page_data = completed_event(stack, "alice", page["id"])["data"]
        assert page_data["final_url"] == stack.web.url("/photo.jpg")
        assert page_data["checksum"] == data["checksum"] and page_data["phash"] == data["phash"]

        cam = api.post("/images", json={"url": stack.web.url("/camera.jpg")}).json()
        cam_data = completed_event(stack, "alice", cam["id"])["data"]
        assert cam_data["exif"]["Make"] == "Canon" and cam_data["exif"]["Model"] == "Canon EOS 7D"
        # the resource travels with the stored event: every EXIF value and time must read
        # back from ClickHouse exactly as announced
        assert api.get(f"/images/{cam['id']}").json() == cam_data


def test_failures_end_as_failed_images_with_webhooks(stack: Stack) -> None:
    stack.web.status("/missing.jpg", 404)
    stack.web.image("/text.jpg", b"this is not an image at all", content_type="image/jpeg")
    stack.web.image("/truncated.jpg", jpeg(300, 200)[:40], content_type="image/jpeg")
    stack.web.image("/slow.jpg", jpeg(100, 100), content_type="image/jpeg", delay=3.0)
    stack.web.huge("/huge.jpg", 4_000_000)
    stack.web.image("/bomb.png", png(5000, 5000), content_type="image/png")  # 25 MP, a few KB
    expected = {"/missing.jpg": "fetch_http_404", "/text.jpg": "not_an_image",
                "/truncated.jpg": "corrupt_image", "/slow.jpg": "fetch_timeout",
                "/huge.jpg": "fetch_too_large", "/bomb.png": "too_many_pixels"}
    with stack.app.client(stack.alice.api_key) as api:
        ids = {api.post("/images", json={"url": stack.web.url(p)}).json()["id"]: code
               for p, code in expected.items()}
        for image_id, code in ids.items():
            event = completed_event(stack, "alice", image_id)
            assert event["type"] == "image.failed"
            assert event["data"]["status"] == "failed"
            assert event["data"]["error"]["code"] == code, event["data"]["error"]
            assert event["data"]["error"]["message"]
            assert api.get(f"/images/{image_id}").json()["error"]["code"] == code


def test_webhook_is_retried_with_the_same_id(stack: Stack) -> None:
    stack.hooks.fail_first["/alice"] = 2
    stack.web.image("/retry.jpg", jpeg(100, 100), content_type="image/jpeg")
    with stack.app.client(stack.alice.api_key) as api:
        image_id = api.post("/images", json={"url": stack.web.url("/retry.jpg")}).json()["id"]
    got = stack.hooks.wait_for("/alice", lambda d: any(x.status == 204 for x in d), timeout=60)
    assert [d.status for d in got] == [500, 500, 204]
    assert len({d.headers["webhook-id"] for d in got}) == 1, "retries must keep the webhook id"
    assert all(d.verified for d in got)
    assert got[-1].event["data"]["id"] == image_id


def test_webhook_that_keeps_failing_ends_dead_after_max_attempts(stack: Stack) -> None:
    stack.hooks.fail_first["/bob"] = 99
    stack.web.image("/dead.jpg", jpeg(80, 80), content_type="image/jpeg")
    with stack.app.client(stack.bob.api_key) as api:
        image_id = api.post("/images", json={"url": stack.web.url("/dead.jpg")}).json()["id"]
    got = stack.hooks.wait_for("/bob", lambda d: len(d) >= 3, timeout=60)
    assert [d.status for d in got] == [500, 500, 500]

    def attempts() -> list[dict[str, Any]]:
        return list(stack.app.call(lambda rt: rt.db.query(
            "SELECT attempt, outcome, status_code FROM webhook_attempts "
            "WHERE image_id = {i:String} ORDER BY attempt", {"i": image_id})))

    rows = attempts()
    for _ in range(50):
        if len(rows) == 3:
            break
        time.sleep(0.1)
        rows = attempts()
    assert [(r["attempt"], r["outcome"], r["status_code"]) for r in rows] == [
        (1, "retry", 500), (2, "retry", 500), (3, "dead", 500)]
    time.sleep(1.0)
    assert len(stack.hooks.deliveries["/bob"]) == 3, "no attempt after the last one"


def test_api_contract_errors_isolation_paging(stack: Stack) -> None:
    stack.web.image("/a.jpg", jpeg(120, 80), content_type="image/jpeg")
    url = stack.web.url("/a.jpg")
    with stack.app.client() as anonymous:
        assert anonymous.post("/images", json={"url": url}).status_code == 401
        wrong = anonymous.get("/images", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
        assert anonymous.get("/healthz").status_code == 200
    with stack.app.client(stack.alice.api_key) as alice, stack.app.client(stack.bob.api_key) as bob:
        bad = alice.post("/images", json={"url": "ftp://example.com/x.jpg"})
        assert bad.status_code == 422 and "http or https" in bad.json()["error"]["message"]
        broken = alice.post("/images", content=b"{not json", headers={"content-type": "application/json"})
        assert broken.status_code == 422 and "JSON" in broken.json()["error"]["message"]
        huge = alice.post("/images", json={"url": url, "passthrough": "x" * 100_000})
        assert huge.status_code == 413

        first = alice.post("/images", json={"url": url}, headers={"Idempotency-Key": "k1"}).json()
        again = alice.post("/images", json={"url": url}, headers={"Idempotency-Key": "k1"})
        assert again.status_code == 202 and again.json()["id"] == first["id"]
        assert bob.get(f"/images/{first['id']}").status_code == 404  # not 403: no existence leak

        ids = [first["id"]] + [alice.post("/images", json={"url": url}).json()["id"] for _ in range(4)]
        page1 = alice.get("/images", params={"limit": 3}).json()
        page2 = alice.get("/images", params={"limit": 3, "cursor": page1["next_cursor"]}).json()
        listed = [i["id"] for i in page1["data"] + page2["data"]]
        assert listed == sorted(ids, reverse=True) and page2["next_cursor"] is None
        assert bob.get("/images").json()["data"] == []

        assert alice.delete(f"/images/{ids[1]}").status_code == 204
        assert alice.get(f"/images/{ids[1]}").status_code == 404
        assert bob.delete(f"/images/{ids[2]}").status_code == 404

        statuses = [bob.get("/images").status_code for _ in range(130)]
        assert 429 in statuses
        limited = bob.get("/images")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_idempotency_key_outlives_completion_and_failure(stack: Stack) -> None:
    stack.web.image("/once.jpg", jpeg(120, 90), content_type="image/jpeg")
    stack.web.status("/gone.jpg", 404)
    with stack.app.client(stack.alice.api_key) as api:
        ids = {}
        for path, key in (("/once.jpg", "order-1"), ("/gone.jpg", "order-2")):
            posted = api.post("/images", json={"url": stack.web.url(path), "passthrough": {"key": key}},
                              headers={"Idempotency-Key": key})
            assert posted.status_code == 202 and "idempotent-replayed" not in posted.headers
            ids[key] = posted.json()["id"]
        assert completed_event(stack, "alice", ids["order-1"])["type"] == "image.completed"
        assert completed_event(stack, "alice", ids["order-2"])["type"] == "image.failed"

        for key, status in (("order-1", "completed"), ("order-2", "failed")):
            stored = api.get(f"/images/{ids[key]}").json()
            assert stored["status"] == status
            again = api.post("/images", json={"url": stack.web.url("/once.jpg")},
                             headers={"Idempotency-Key": key})
            assert again.status_code == 202, again.text
            assert again.headers.get("idempotent-replayed") == "true"
            assert again.json() == stored  # the image as it is now, not a new one
        listed = api.get("/images", params={"limit": 100}).json()["data"]
        assert sorted(i["id"] for i in listed) == sorted(ids.values()), "a retried POST made an image"
        assert stack.web.hits("/once.jpg") == 1


def test_processing_status_is_visible_while_downloading(stack: Stack) -> None:
    stack.web.image("/slow-ok.jpg", jpeg(160, 120), content_type="image/jpeg", delay=1.2)
    with stack.app.client(stack.alice.api_key) as api:
        image = api.post("/images", json={"url": stack.web.url("/slow-ok.jpg"), "passthrough": {"n": 1}},
                         headers={"Idempotency-Key": "slow-1"}).json()
        seen: list[str] = []
        processing: dict[str, Any] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            got = api.get(f"/images/{image['id']}").json()
            if not seen or seen[-1] != got["status"]:
                seen.append(got["status"])
            if got["status"] == "processing":
                processing = got
            if got["status"] in ("completed", "failed"):
                break
            time.sleep(0.05)
        assert seen[-1] == "completed", seen
        assert "processing" in seen, f"never saw `processing`: {seen}"
        assert seen.index("processing") < seen.index("completed")
        assert set(seen) <= {"pending", "processing", "completed"}, seen
        assert processing["passthrough"] == {"n": 1} and processing["url"] == image["url"]
        assert processing["checksum"] is None and processing["error"] is None
        assert datetime.fromisoformat(processing["updated_at"]) >= datetime.fromisoformat(
            processing["created_at"])
        replay = api.post("/images", json={"url": image["url"]}, headers={"Idempotency-Key": "slow-1"})
        assert replay.json()["id"] == image["id"] and replay.headers["idempotent-replayed"] == "true"
        assert completed_event(stack, "alice", image["id"])["type"] == "image.completed"
