"""The published JSON Schemas match the records, and an external producer's event validates."""

from __future__ import annotations

import json

from agents.topology import ALL_TOPICS, IMAGES_REQUESTED
from schemas.events import ImageRequested
from schemas.jsonschema import JSON_DIR, render, topic_schemas


def test_committed_schemas_are_current() -> None:
    for name, schema in topic_schemas(ALL_TOPICS).items():
        path = JSON_DIR / name
        assert path.exists(), f"{path} missing: run `imgkit schemas`"
        assert path.read_text() == render(schema), f"{path} is stale: run `imgkit schemas`"


def test_minimal_external_event_is_accepted() -> None:
    schema = json.loads((JSON_DIR / f"{IMAGES_REQUESTED.name}.json").read_text())
    assert set(schema["required"]) == {"image_id", "account_id", "url"}
    event = ImageRequested.from_bytes(json.dumps(
        {"image_id": "img_2Jb0f0vJ6t3mZ7Q6ZyQ9oYb3x1T", "account_id": "acc_x", "url": "https://e.x/a.jpg",
         "some_future_field": 1}))
    assert event.options.exif and event.version == 1 and event.key == "img_2Jb0f0vJ6t3mZ7Q6ZyQ9oYb3x1T"
