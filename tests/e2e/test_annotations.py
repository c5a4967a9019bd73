"""Annotations end to end, over real sockets, in both run modes.

A completed image is annotated through `POST /images/{id}/annotations`: the
`google` provider talks to the fake Vision server (the real client, REST, on
loopback), `local` and `tesseract` run here. The result arrives by a signed
`annotations.completed` webhook and reads back through GET; the result cache
spares the provider a second call for the same bytes, whatever the account.
Failure paths answer 4xx at once, or end as an `annotations.failed` webhook
with the provider's message after the retries a transient error deserves.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw, ImageFont

from imgkit.accounts import NewAccount
from tests.support.app_server import AppServer
from tests.support.fake_vision import FakeVision
from tests.support.http_server import HTTPTestServer
from tests.support.images import jpeg
from tests.support.stack import start_app
from tests.support.webhooks import Delivery, WebhookReceiver

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


@dataclass
class Stack:
    app: AppServer
    web: HTTPTestServer
    hooks: WebhookReceiver
    vision: FakeVision
    alice: NewAccount
    bob: NewAccount

    @property
    def sources_dir(self) -> Path:
        return self.app.settings.sources_dir


StackFactory = Callable[..., Stack]


@pytest.fixture(params=["dev", "kafka"])
def make_stack(request: pytest.FixtureRequest, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[StackFactory]:
    """Build the stack with the test's own settings (one app server at a time: chDB)."""
    # No Application Default Credentials, whatever the machine: `google` then runs only
    # against the endpoint override, anonymously, or is not configured at all.
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    kafka = request.getfixturevalue("kafka_bootstrap") if request.param == "kafka" else None
    cleanup: list[Callable[[], None]] = []

    def build(**settings: Any) -> Stack:
        web = HTTPTestServer().start()
        hooks = WebhookReceiver().start()
        vision = FakeVision().start()
        cleanup.extend([web.stop, hooks.stop, vision.stop])
        defaults: dict[str, Any] = dict(
            fetch_timeout=5.0, google_vision_endpoint=vision.endpoint, annotate_backoff_base=0.01,
            annotate_backoff_max=0.05, annotate_max_attempts=3)
        app, alice, bob = start_app(tmp_path, hooks, kafka, **{**defaults, **settings})
        cleanup.insert(0, app.stop)
        return Stack(app, web, hooks, vision, alice, bob)

    try:
        yield build
    finally:
        for stop in cleanup:
            stop()


# --- helpers ---------------------------------------------------------------------------------

def text_image(text: str) -> bytes:
    """Black text on white, large enough for tesseract to read reliably."""
    image = Image.new("RGB", (900, 160), "white")
    ImageDraw.Draw(image).text((30, 40), text, fill="black", font=ImageFont.truetype(FONT, 64))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def webhook_for(stack: Stack, account: str, key: str, value: str, timeout: float = 90) -> Delivery:
    """The delivered (204) webhook whose `data` has `key` == value (`id` of an image, or the
    annotation request's id with key `ann`)."""
    def matches(d: Delivery) -> bool:
        data = d.event["data"]
        found = data.get("annotation_request", {}).get("id") if key == "ann" else data.get(key)
        return bool(found == value and d.status == 204)

    got = stack.hooks.wait_for(f"/{account}", lambda ds: any(matches(d) for d in ds), timeout=timeout)
    [delivery] = [d for d in got if matches(d)]
    assert delivery.verified, "webhook signature did not verify"
    return delivery


def ingest(stack: Stack, api: httpx.Client, account: str, path: str, data: bytes,
           content_type: str = "image/jpeg") -> dict[str, Any]:
    """Serve `data`, submit it, wait until it is completed; the image resource."""
    stack.web.image(path, data, content_type=content_type)
    posted = api.post("/images", json={"url": stack.web.url(path)})
    assert posted.status_code == 202, posted.text
    event = webhook_for(stack, account, "id", posted.json()["id"]).event
    assert event["type"] == "image.completed", event
    return dict(event["data"])


def annotate(api: httpx.Client, image_id: str, features: list[str], **body: Any) -> httpx.Response:
    return api.post(f"/images/{image_id}/annotations", json={"annotations": features, **body})


def annotated(stack: Stack, api: httpx.Client, account: str, image_id: str, features: list[str],
              **body: Any) -> dict[str, Any]:
    """Request annotations, check the 202 resource, wait for the webhook; its payload."""
    posted = annotate(api, image_id, features, **body)
    assert posted.status_code == 202, posted.text
    request = posted.json()
    assert request["id"].startswith("ann_") and request["status"] == "pending"
    assert posted.headers["location"] == f"/images/{image_id}/annotations/{request['id']}"
    return dict(webhook_for(stack, account, "ann", request["id"]).event)


def assert_error(response: httpx.Response, status: int, code: str, *needles: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    for needle in needles:
        assert needle in error["message"], error


# --- tests ---------------------------------------------------------------------------------

def test_google_annotations_by_webhook_get_and_cache(make_stack: StackFactory) -> None:
    stack = make_stack()
    photo = jpeg(320, 240)
    with stack.app.client(stack.alice.api_key) as alice, stack.app.client(stack.bob.api_key) as bob:
        image = ingest(stack, alice, "alice", "/dog.jpg", photo)
        event = annotated(stack, alice, "alice", image["id"], ["labels", "safe_search"],
                          provider="google", passthrough={"job": 7})
        assert event["type"] == "annotations.completed"
        assert stack.vision.calls == 1
        assert stack.vision.requests[0].image_content == photo  # the stored original, unchanged
        assert sorted(stack.vision.requests[0].feature_types) == ["LABEL_DETECTION",
                                                                  "SAFE_SEARCH_DETECTION"]
        data = event["data"]
        request = data["annotation_request"]
        assert request["status"] == "completed" and request["passthrough"] == {"job": 7}
        assert request["provider"] == "google" and request["cached_features"] == []
        assert request["annotations"]["labels"][0]["description"] == "Dog"
        assert request["annotations"]["text"] is None  # not asked
        assert data["id"] == image["id"] and data["checksum"] == image["checksum"]
        merged = data["annotations"]
        assert [label["description"] for label in merged["labels"]][:2] == ["Dog", "Dog breed"]
        assert merged["safe_search"]["racy"] == "POSSIBLE"
        assert merged["providers"] == {"labels": "google", "safe_search": "google"}
        assert "labelAnnotations" in merged["raw"]["google"]
        # the webhook announces what is stored: GET returns the same
        assert alice.get(f"/images/{image['id']}").json() == {
            k: v for k, v in data.items() if k != "annotation_request"}
        got = alice.get(f"/images/{image['id']}/annotations/{request['id']}")
        assert got.status_code == 200 and got.json() == request

        # the same request again: answered from the cache, the provider is not called
        again = annotated(stack, alice, "alice", image["id"], ["labels", "safe_search"],
                          provider="google")
        assert stack.vision.calls == 1
        again_request = again["data"]["annotation_request"]
        assert sorted(again_request["cached_features"]) == ["labels", "safe_search"]
        assert again_request["annotations"]["labels"] == request["annotations"]["labels"]

        # a cached feature and a new one: only the new one is sent
        more = annotated(stack, alice, "alice", image["id"], ["labels", "text"], provider="google")
        assert stack.vision.calls == 2
        assert stack.vision.requests[-1].feature_types == ["DOCUMENT_TEXT_DETECTION"]
        merged = more["data"]["annotations"]
        assert merged["text"]["full_text"] == "Hello World\nImgKit\n"
        assert set(merged["providers"]) == {"labels", "safe_search", "text"}

        # the same bytes in another account: cache hit across accounts, results stay private
        copy = ingest(stack, bob, "bob", "/copy-of-dog.jpg", photo)
        assert copy["checksum"] == image["checksum"]
        theirs = annotated(stack, bob, "bob", copy["id"], ["labels", "text"], provider="google")
        assert stack.vision.calls == 2
        assert theirs["data"]["annotation_request"]["annotations"]["labels"][0]["description"] == "Dog"
        assert bob.get(f"/images/{image['id']}/annotations/{request['id']}").status_code == 404
        assert_error(annotate(bob, image["id"], ["labels"]), 404, "not_found")

        # the original evicted from the source cache: downloaded again, then annotated
        blob = stack.sources_dir / image["checksum"][:2] / image["checksum"][2:]
        blob.unlink()
        hits = stack.web.hits("/dog.jpg")
        faces = annotated(stack, alice, "alice", image["id"], ["faces"], provider="google")
        assert faces["type"] == "annotations.completed"
        assert stack.web.hits("/dog.jpg") == hits + 1 and stack.vision.calls == 3
        assert stack.vision.requests[-1].image_content == photo

        # deleting the image deletes its annotation requests (the shared cache stays)
        assert alice.delete(f"/images/{image['id']}").status_code == 204
        assert alice.get(f"/images/{image['id']}/annotations/{request['id']}").status_code == 404
        rows = stack.app.call(lambda rt: rt.db.query(
            "SELECT id FROM annotations FINAL WHERE image_id = {i:String}", {"i": image["id"]}))
        assert rows == []
        still = annotated(stack, bob, "bob", copy["id"], ["safe_search"], provider="google")
        assert still["data"]["annotation_request"]["cached_features"] == ["safe_search"]
        assert stack.vision.calls == 3


def test_local_and_tesseract_providers(make_stack: StackFactory) -> None:
    stack = make_stack(vision_provider="local")
    with stack.app.client(stack.alice.api_key) as alice:
        image = ingest(stack, alice, "alice", "/red.jpg", jpeg(200, 150, colour=(220, 20, 20),
                                                               pattern=False))
        event = annotated(stack, alice, "alice", image["id"], ["properties"])  # default provider
        request = event["data"]["annotation_request"]
        assert request["provider"] == "local"
        colours = event["data"]["annotations"]["properties"]["dominant_colours"]
        assert colours and colours[0]["hex"].startswith("#d") and colours[0]["pixel_fraction"] > 0.9

        words = ingest(stack, alice, "alice", "/words.png", text_image("HELLO IMGKIT 42"),
                       content_type="image/png")
        ocr = annotated(stack, alice, "alice", words["id"], ["text"], provider="tesseract")
        assert ocr["type"] == "annotations.completed", ocr["data"]["annotation_request"]
        text = ocr["data"]["annotations"]["text"]
        assert "HELLO IMGKIT 42" in text["full_text"], text["full_text"]
        assert text["blocks"][0]["words"][0]["text"] == "HELLO"
        assert ocr["data"]["annotations"]["providers"] == {"text": "tesseract"}
        assert stack.vision.calls == 0


def test_requests_refused_with_clear_errors(make_stack: StackFactory) -> None:
    stack = make_stack()
    with stack.app.client(stack.alice.api_key) as alice:
        image = ingest(stack, alice, "alice", "/a.jpg", jpeg(120, 80))
        image_id = image["id"]
        assert_error(annotate(alice, image_id, ["labels", "colours"]), 422, "unknown_feature",
                     "'colours'", "labels, landmarks, properties, text")
        assert_error(annotate(alice, image_id, []), 422, "no_features")
        assert_error(annotate(alice, "img_2Jb0f0vJ6t3mZ7Q6ZyQ9oYb3x1T", ["labels"]), 404, "not_found")
        assert_error(annotate(alice, image_id, ["labels"], provider="azure"), 422, "unknown_provider",
                     "google, tesseract, local")
        assert_error(annotate(alice, image_id, ["labels"], provider="local"), 422,
                     "unsupported_feature", "labels", "properties")
        assert_error(annotate(alice, image_id, ["labels"], provider="tesseract"), 422,
                     "unsupported_feature")
        missing = alice.get(f"/images/{image_id}/annotations/ann_2Jb0f0vJ6t3mZ7Q6ZyQ9oYb3x1T")
        assert_error(missing, 404, "not_found")

        stack.web.image("/slow.jpg", jpeg(90, 90), content_type="image/jpeg", delay=3.0)
        pending = alice.post("/images", json={"url": stack.web.url("/slow.jpg")}).json()
        assert_error(annotate(alice, pending["id"], ["labels"], provider="google"), 409,
                     "image_not_ready", "pending")
        assert stack.vision.calls == 0


def test_provider_errors_end_as_failed_webhooks(make_stack: StackFactory) -> None:
    stack = make_stack()
    with stack.app.client(stack.alice.api_key) as alice:
        first = ingest(stack, alice, "alice", "/one.jpg", jpeg(100, 100, colour=(10, 200, 10)))
        second = ingest(stack, alice, "alice", "/two.jpg", jpeg(100, 100, colour=(10, 10, 200)))

        # transient (429) every time: retried up to annotate_max_attempts, then failed
        stack.vision.fail_with(429, "Quota exceeded for quota metric 'Requests'.", times=3)
        failed = annotated(stack, alice, "alice", first["id"], ["labels"], provider="google")
        assert failed["type"] == "annotations.failed"
        request = failed["data"]["annotation_request"]
        assert request["status"] == "failed" and request["annotations"] is None
        assert "Quota exceeded for quota metric" in request["error"]["message"], request["error"]
        assert stack.vision.calls == 3
        assert failed["data"]["annotations"] is None  # nothing completed for this image
        stored = alice.get(f"/images/{first['id']}/annotations/{request['id']}").json()
        assert stored["status"] == "failed" and stored["error"] == request["error"]

        # not retryable (400): failed after one call
        stack.vision.fail_with(400, "Bad image data.", times=1)
        rejected = annotated(stack, alice, "alice", second["id"], ["labels"], provider="google")
        assert rejected["type"] == "annotations.failed"
        error = rejected["data"]["annotation_request"]["error"]
        assert error["code"] == "annotation_rejected" and "Bad image data." in error["message"]
        assert stack.vision.calls == 4

        # a failure is not cached: asking again calls the provider, which now answers
        ok = annotated(stack, alice, "alice", second["id"], ["labels"], provider="google")
        assert ok["type"] == "annotations.completed" and stack.vision.calls == 5


def test_provider_not_configured(make_stack: StackFactory) -> None:
    # google with neither credentials nor an endpoint override cannot run here
    stack = make_stack(google_vision_endpoint="", vision_provider="google")
    with stack.app.client(stack.alice.api_key) as alice:
        image = ingest(stack, alice, "alice", "/b.jpg", jpeg(64, 64))
        started = time.monotonic()
        explicit = annotate(alice, image["id"], ["labels"], provider="google")
        assert_error(explicit, 422, "provider_not_configured", "credentials")
        # the server's default provider being unusable is the server's problem
        assert_error(annotate(alice, image["id"], ["labels"]), 503, "provider_not_configured")
        assert time.monotonic() - started < 10
        # another provider still works
        local = annotated(stack, alice, "alice", image["id"], ["properties"], provider="local")
        assert local["type"] == "annotations.completed"


def test_image_list_carries_annotations_in_one_query(make_stack: StackFactory,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stack = make_stack()
    with stack.app.client(stack.alice.api_key) as alice, stack.app.client(stack.bob.api_key) as bob:
        dog = ingest(stack, alice, "alice", "/dog.jpg", jpeg(320, 240))
        red = ingest(stack, alice, "alice", "/red.jpg", jpeg(200, 150, colour=(220, 20, 20), pattern=False))
        plain = ingest(stack, alice, "alice", "/plain.jpg", jpeg(100, 100, colour=(10, 10, 200)))
        theirs = ingest(stack, bob, "bob", "/dog-copy.jpg", jpeg(320, 240))
        assert annotated(stack, alice, "alice", dog["id"], ["labels"],
                         provider="google")["type"] == "annotations.completed"
        assert annotated(stack, alice, "alice", red["id"], ["labels"],
                         provider="google")["type"] == "annotations.completed"
        assert annotated(stack, alice, "alice", red["id"], ["properties"],
                         provider="local")["type"] == "annotations.completed"
        assert annotated(stack, bob, "bob", theirs["id"], ["safe_search"],
                         provider="google")["type"] == "annotations.completed"

        db = stack.app.runtime.db if stack.app.runtime else None
        assert db is not None
        queries: list[str] = []
        query = db.query

        async def counted(sql: str, parameters: Any = None) -> Any:
            queries.append(sql)
            return await query(sql, parameters)

        monkeypatch.setattr(db, "query", counted)
        listed = alice.get("/images", params={"limit": 10})
        assert listed.status_code == 200, listed.text
        assert sum("FROM annotations" in q for q in queries) == 1, queries
        monkeypatch.setattr(db, "query", query)

        page = {image["id"]: image for image in listed.json()["data"]}
        assert list(page) == sorted([plain["id"], red["id"], dog["id"]], reverse=True)
        for image_id, image in page.items():
            assert image == alice.get(f"/images/{image_id}").json()  # the same resource, annotations too
        assert [label["description"] for label in page[dog["id"]]["annotations"]["labels"]][:1] == ["Dog"]
        assert page[dog["id"]]["annotations"]["providers"] == {"labels": "google"}
        assert page[red["id"]]["annotations"]["providers"] == {"labels": "google", "properties": "local"}
        assert page[red["id"]]["annotations"]["properties"]["dominant_colours"]
        assert page[plain["id"]]["annotations"] is None
        # bob's annotations of the same bytes stay bob's
        [bobs] = bob.get("/images").json()["data"]
        assert bobs["annotations"]["providers"] == {"safe_search": "google"}
        assert bobs == bob.get(f"/images/{theirs['id']}").json()
