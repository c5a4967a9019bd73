"""The `local` provider, the provider registry, and the neutral annotation schema."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from agents.annotate.providers import (
    PROVIDERS,
    ProviderError,
    UnknownProvider,
    UnsupportedFeatures,
    get_provider,
)
from agents.annotate.providers.local import LocalProvider
from imaging.palette import dominant_colours
from imgkit.settings import Settings, load_settings
from schemas.annotations import Annotations, Feature


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path)


def red_and_blue_png() -> bytes:
    img = Image.new("RGB", (400, 200), (255, 0, 0))
    img.paste((0, 0, 255), (300, 0, 400, 200))
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


async def test_dominant_colours(settings: Settings) -> None:
    provider = get_provider("local", settings)
    image = red_and_blue_png()

    result = await provider.annotate(image, {Feature.properties})

    assert result.provider == "local"
    assert result.properties is not None
    colours = result.properties.dominant_colours
    assert colours[0].hex == "#ff0000"
    assert colours[0].pixel_fraction == pytest.approx(0.75, abs=0.03)
    assert colours[1].hex == "#0000ff"
    assert all(c.score == c.pixel_fraction for c in colours)
    assert result.features() == {Feature.properties}
    assert result.labels is None and result.text is None
    # One implementation: the same numbers as imaging.palette, which ingestion uses too.
    assert [(c.hex, c.pixel_fraction) for c in colours] == [
        (c.hex, c.share) for c in dominant_colours(image)]
    assert result.raw["dominant_colours"][0]["rgb"] == [255, 0, 0]


async def test_unsupported_feature_is_refused_before_any_work() -> None:
    with pytest.raises(UnsupportedFeatures) as info:
        await LocalProvider().annotate(b"not even an image", {Feature.properties, Feature.labels})
    error = info.value
    assert not error.retryable
    assert error.status == 422
    assert "labels" in error.message and "properties" in error.message


async def test_no_feature_requested() -> None:
    with pytest.raises(ProviderError) as info:
        await LocalProvider().annotate(red_and_blue_png(), set())
    assert not info.value.retryable


async def test_not_an_image() -> None:
    with pytest.raises(ProviderError) as info:
        await LocalProvider().annotate(b"<html>nope</html>", {Feature.properties})
    assert info.value.code == "invalid_image"
    assert info.value.status == 422
    assert not info.value.retryable
    assert info.value.to_dict()["retryable"] is False


def test_registry(settings: Settings) -> None:
    assert PROVIDERS == ("google", "tesseract", "local")
    assert isinstance(get_provider(" Local ", settings), LocalProvider)
    with pytest.raises(UnknownProvider) as info:
        get_provider("azure", settings)
    assert "google, tesseract, local" in info.value.message
    assert info.value.status == 422


def test_schema_round_trip_and_documentation() -> None:
    result = Annotations.model_validate({
        "provider": "google",
        "labels": [{"description": "Dog", "score": 0.9}],
        "safe_search": {"adult": "VERY_UNLIKELY", "racy": "POSSIBLE"},
        "properties": {"dominant_colours": [{"hex": "#ff0000", "score": 0.5, "pixel_fraction": 0.4}]},
        "a_field_from_a_newer_release": 1,
    })
    assert Annotations.model_validate_json(result.model_dump_json()) == result
    assert result.features() == {Feature.labels, Feature.safe_search, Feature.properties}
    assert result.safe_search is not None and result.safe_search.medical == "UNKNOWN"

    # Every field is documented: the OpenAPI document shows these descriptions.
    schema = Annotations.model_json_schema()
    models = {"Annotations": schema, **schema["$defs"]}
    for name, model in models.items():
        for field, spec in model.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"
    assert set(Feature) == {Feature(f) for f in
                            ("labels", "landmarks", "properties", "text", "web_entities",
                             "safe_search", "faces", "objects")}
