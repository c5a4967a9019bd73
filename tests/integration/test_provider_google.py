"""The `google` provider: the real google-cloud-vision client (REST transport) against
the fake Vision server of tests/support, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import google.auth
import pytest
from google.auth import exceptions as auth_exc
from PIL import Image

from agents.annotate.providers import ProviderError, ProviderNotConfigured, get_provider
from agents.annotate.providers.google import FEATURE_TYPES, GoogleVisionProvider
from imgkit.settings import Settings, load_settings
from schemas.annotations import Feature, Likelihood
from tests.support.fake_vision import FakeVision

ALL_TYPES = {"LABEL_DETECTION", "LANDMARK_DETECTION", "DOCUMENT_TEXT_DETECTION", "SAFE_SEARCH_DETECTION",
             "IMAGE_PROPERTIES", "WEB_DETECTION", "FACE_DETECTION", "OBJECT_LOCALIZATION"}


@pytest.fixture
def fake_vision() -> Iterator[FakeVision]:
    with FakeVision() as fake:
        yield fake


@pytest.fixture
def no_google_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine with no Application Default Credentials, whatever the developer's own setup."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no ADC file from gcloud


def settings_for(fake: FakeVision, tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(data_dir=tmp_path, google_vision_endpoint=fake.endpoint, **overrides)


@pytest.fixture
def provider(fake_vision: FakeVision, tmp_path: Path, no_google_credentials: None) -> GoogleVisionProvider:
    built = get_provider("google", settings_for(fake_vision, tmp_path))
    assert isinstance(built, GoogleVisionProvider)
    return built


@pytest.fixture
def image() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_sends_the_image_bytes_and_the_features(provider: GoogleVisionProvider, fake_vision: FakeVision,
                                                      image: bytes) -> None:
    await provider.annotate(image, set(Feature))

    assert fake_vision.calls == 1
    sent = fake_vision.requests[0]
    assert sent.method == "POST" and sent.path == "/v1/images:annotate"
    assert sent.image_content == image
    assert len(sent.body["requests"]) == 1
    assert set(sent.feature_types) == ALL_TYPES
    assert set(sent.max_results.values()) == {10}  # IMGKIT_GOOGLE_VISION_MAX_RESULTS default
    # Endpoint override without credentials: anonymous, no Authorization header at all.
    assert "authorization" not in sent.headers
    assert "gapic/" in sent.headers["x-goog-api-client"]


async def test_feature_mapping_is_the_documented_one(provider: GoogleVisionProvider,
                                                     fake_vision: FakeVision, image: bytes) -> None:
    expected = {Feature.labels: "LABEL_DETECTION", Feature.landmarks: "LANDMARK_DETECTION",
                Feature.text: "DOCUMENT_TEXT_DETECTION", Feature.safe_search: "SAFE_SEARCH_DETECTION",
                Feature.properties: "IMAGE_PROPERTIES", Feature.web_entities: "WEB_DETECTION",
                Feature.faces: "FACE_DETECTION", Feature.objects: "OBJECT_LOCALIZATION"}
    assert {f: t.name for f, t in FEATURE_TYPES.items()} == expected  # type: ignore[attr-defined]
    for feature, vision_type in expected.items():
        result = await provider.annotate(image, {feature})
        assert fake_vision.requests[-1].feature_types == [vision_type]
        assert result.features() == {feature}


async def test_maps_every_feature(provider: GoogleVisionProvider, image: bytes) -> None:
    result = await provider.annotate(image, set(Feature))

    assert result.provider == "google"
    assert result.features() == set(Feature)
    assert result.labels is not None
    assert [(label.description, label.mid) for label in result.labels] == [
        ("Dog", "/m/0bt9lr"), ("Dog breed", "/m/0kpmf"), ("Canidae", "/m/01z5f")]
    assert result.labels[0].score == pytest.approx(0.9753, abs=1e-4)
    assert result.labels[0].topicality == pytest.approx(0.9753, abs=1e-4)

    assert result.landmarks is not None
    (tower,) = result.landmarks
    assert tower.description == "Eiffel Tower"
    assert (tower.latitude, tower.longitude) == (pytest.approx(48.858461), pytest.approx(2.294351))

    assert result.text is not None
    assert result.text.full_text == "Hello World\nImgKit\n"
    assert [b.text for b in result.text.blocks] == ["Hello World", "ImgKit"]
    first = result.text.blocks[0]
    assert first.confidence == pytest.approx(0.98, abs=1e-4)
    # proto3 JSON leaves out zero coordinates ({"y": 10} for x=0): they come back as 0.
    assert [(v.x, v.y) for v in first.bounding_box] == [(0, 10), (132, 10), (132, 30), (0, 30)]
    assert [(w.text, w.bounding_box[0].x) for w in first.words] == [("Hello", 0), ("World", 72)]

    assert result.safe_search is not None
    assert result.safe_search.model_dump() == {
        "adult": Likelihood.VERY_UNLIKELY, "spoof": Likelihood.UNLIKELY,
        "medical": Likelihood.VERY_UNLIKELY, "violence": Likelihood.UNLIKELY, "racy": Likelihood.POSSIBLE}

    assert result.properties is not None
    colours = result.properties.dominant_colours
    assert [c.hex for c in colours] == ["#e86d4d", "#242834", "#fafaf5"]  # 250.5 rounds to 250
    assert colours[0].score == pytest.approx(0.5125, abs=1e-4)
    assert colours[1].pixel_fraction == pytest.approx(0.4012, abs=1e-4)

    web = result.web_entities
    assert web is not None
    assert [(e.entity_id, e.description) for e in web.entities] == [
        ("/m/0bt9lr", "Dog"), ("/m/01t032", "Golden Retriever")]
    assert web.entities[0].score == pytest.approx(1.2245, abs=1e-4)
    assert web.best_guess_labels == ["golden retriever"]
    assert web.full_matching_image_urls == ["https://example.com/dog.jpg"]
    assert web.partial_matching_image_urls == ["https://example.com/dog-crop.jpg"]
    assert web.visually_similar_image_urls == ["https://example.org/other-dog.jpg"]
    assert web.pages_with_matching_images == ["https://example.com/dogs"]

    assert result.faces is not None
    (face,) = result.faces
    assert face.detection_confidence == pytest.approx(0.984, abs=1e-4)
    assert (face.joy, face.sorrow, face.anger, face.surprise) == (
        Likelihood.VERY_LIKELY, Likelihood.VERY_UNLIKELY, Likelihood.VERY_UNLIKELY, Likelihood.UNLIKELY)
    assert [(v.x, v.y) for v in face.bounding_box] == [(0, 12), (110, 12), (110, 130), (0, 130)]

    assert result.objects is not None
    assert [(o.name, o.mid) for o in result.objects] == [("Bicycle wheel", "/m/01bqk0"),
                                                         ("Bicycle", "/m/0199g")]
    wheel = result.objects[0]
    assert wheel.score == pytest.approx(0.9423, abs=1e-4)
    assert (wheel.bounding_poly[0].x, wheel.bounding_poly[2].y) == (pytest.approx(0.3125),
                                                                    pytest.approx(0.9305))
    assert result.objects[1].bounding_poly[3].x == 0.0  # omitted zero

    # The raw answer is kept, in the REST JSON shape (camelCase, enum names).
    assert result.raw["labelAnnotations"][0]["description"] == "Dog"
    assert result.raw["safeSearchAnnotation"]["racy"] == "POSSIBLE"
    assert "cropHintsAnnotation" in result.raw  # what Vision sent beyond the neutral shape
    assert result.model_dump(mode="json")["raw"] == result.raw


async def test_only_requested_features_and_max_results(fake_vision: FakeVision, tmp_path: Path,
                                                        no_google_credentials: None, image: bytes) -> None:
    provider = get_provider("google", settings_for(fake_vision, tmp_path, google_vision_max_results=2))

    result = await provider.annotate(image, {Feature.labels})

    assert fake_vision.requests[0].max_results == {"LABEL_DETECTION": 2}
    assert result.labels is not None and len(result.labels) == 2
    assert result.features() == {Feature.labels}
    assert set(result.raw) == {"labelAnnotations"}


async def test_text_detection_shape_without_full_text(provider: GoogleVisionProvider,
                                                       fake_vision: FakeVision, image: bytes) -> None:
    fake_vision.set_answer("DOCUMENT_TEXT_DETECTION", {"textAnnotations": [
        {"locale": "en", "description": "STOP\n", "boundingPoly": {"vertices": [
            {"x": 5, "y": 5}, {"x": 50, "y": 5}, {"x": 50, "y": 20}, {"x": 5, "y": 20}]}},
        {"description": "STOP", "boundingPoly": {"vertices": [
            {"x": 5, "y": 5}, {"x": 50, "y": 5}, {"x": 50, "y": 20}, {"x": 5, "y": 20}]}},
    ]})

    result = await provider.annotate(image, {Feature.text})

    assert result.text is not None
    assert result.text.full_text == "STOP\n"
    assert [(b.text, [w.text for w in b.words]) for b in result.text.blocks] == [("STOP", ["STOP"])]


async def test_nothing_found_is_empty_not_none(provider: GoogleVisionProvider, fake_vision: FakeVision,
                                               image: bytes) -> None:
    fake_vision.set_answer("LABEL_DETECTION", {})
    fake_vision.set_answer("DOCUMENT_TEXT_DETECTION", {})

    result = await provider.annotate(image, {Feature.labels, Feature.text})

    assert result.labels == []
    assert result.text is not None and result.text.full_text == "" and result.text.blocks == []


@pytest.mark.parametrize(("status", "message", "retryable"), [
    (429, "Quota exceeded for quota metric 'Requests' of service 'vision.googleapis.com'", True),
    (500, "Internal error encountered.", True),
    (503, "The service is currently unavailable.", True),
    (504, "Deadline expired before operation could complete.", True),
    (400, "Request must specify image and features.", False),
    (403, "Cloud Vision API has not been used in project 123 before or it is disabled.", False),
])
async def test_http_errors(provider: GoogleVisionProvider, fake_vision: FakeVision, image: bytes,
                           status: int, message: str, retryable: bool) -> None:
    fake_vision.fail_with(status, message)

    with pytest.raises(ProviderError) as info:
        await provider.annotate(image, {Feature.labels})

    error = info.value
    assert error.retryable is retryable
    assert error.provider == "google"
    assert message in error.message
    assert "http://" not in error.message  # the request URL is not part of the client's message
    assert error.context["http_status"] == status
    if status == 400:
        assert (error.code, error.status) == ("annotation_rejected", 422)
    # No hidden retries inside the client (its default would retry 503/504 for 600 s):
    # retrying is the agent's decision.
    assert fake_vision.calls == 1
    # The next call goes through.
    assert (await provider.annotate(image, {Feature.labels})).labels


async def test_unauthenticated_is_not_retryable(provider: GoogleVisionProvider, fake_vision: FakeVision,
                                                image: bytes) -> None:
    # On 401 google-auth tries to refresh the credentials; anonymous ones cannot be.
    fake_vision.fail_with(401, "Request had invalid authentication credentials.")

    with pytest.raises(ProviderError) as info:
        await provider.annotate(image, {Feature.labels})

    assert not info.value.retryable
    assert "credentials" in info.value.message


@pytest.mark.parametrize(("rpc_code", "retryable"), [(3, False), (7, False), (14, True), (8, True)])
async def test_per_image_error(provider: GoogleVisionProvider, fake_vision: FakeVision, image: bytes,
                               rpc_code: int, retryable: bool) -> None:
    fake_vision.fail_image_with(rpc_code, "Bad image data.")

    with pytest.raises(ProviderError) as info:
        await provider.annotate(image, {Feature.labels})

    assert info.value.retryable is retryable
    assert "Bad image data." in info.value.message
    if not retryable:
        assert info.value.status == 422


async def test_timeout_is_retryable(fake_vision: FakeVision, tmp_path: Path, no_google_credentials: None,
                                    image: bytes) -> None:
    provider = get_provider("google", settings_for(fake_vision, tmp_path, vision_timeout=0.3))
    fake_vision.delay_answers(3)

    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await provider.annotate(image, {Feature.labels})

    assert time.monotonic() - started < 2.5
    assert info.value.retryable
    assert info.value.code == "annotation_timeout"


async def test_unreachable_endpoint_is_retryable(tmp_path: Path, no_google_credentials: None,
                                                 image: bytes) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = get_provider("google", load_settings(data_dir=tmp_path,
                                                    google_vision_endpoint=f"http://127.0.0.1:{port}"))

    with pytest.raises(ProviderError) as info:
        await provider.annotate(image, {Feature.labels})
    assert info.value.retryable


async def test_concurrent_calls(provider: GoogleVisionProvider, fake_vision: FakeVision) -> None:
    images = [bytes([i]) * 100 for i in range(8)]

    results = await asyncio.gather(*(provider.annotate(img, {Feature.labels}) for img in images))

    assert all(r.labels for r in results)
    assert sorted(r.image_content for r in fake_vision.requests) == sorted(images)
    await provider.aclose()


async def test_no_feature_is_refused_without_a_call(provider: GoogleVisionProvider, fake_vision: FakeVision,
                                                    image: bytes) -> None:
    with pytest.raises(ProviderError):
        await provider.annotate(image, set())
    assert fake_vision.calls == 0


def test_without_endpoint_or_credentials_it_is_not_configured(
        tmp_path: Path, no_google_credentials: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_adc(*args: object, **kwargs: object) -> None:
        raise auth_exc.DefaultCredentialsError("Your default credentials were not found.")
    monkeypatch.setattr(google.auth, "default", no_adc)  # also no metadata server

    with pytest.raises(ProviderNotConfigured) as info:
        get_provider("google", load_settings(data_dir=tmp_path))
    assert "GOOGLE_APPLICATION_CREDENTIALS" in info.value.message


def test_unreadable_key_file_is_not_configured(tmp_path: Path, fake_vision: FakeVision) -> None:
    key = tmp_path / "key.json"
    key.write_text("{}")

    with pytest.raises(ProviderNotConfigured) as info:
        get_provider("google", settings_for(fake_vision, tmp_path, google_vision_credentials=key))
    assert str(key) in info.value.message
