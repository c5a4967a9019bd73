"""JSON Schemas of every topic's record, for systems that produce or consume events
without our code. `imgkit schemas` writes them to `schemas/json/<topic>.json`; a test
fails when a committed schema no longer matches its record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.delivery import DeadLetter
from streams.topology import Topic

JSON_DIR = Path(__file__).with_name("json")


def topic_schemas(topics: tuple[Topic[Any], ...]) -> dict[str, dict[str, Any]]:
    """File name → schema, one per topic, plus the dead-letter envelope."""
    out: dict[str, dict[str, Any]] = {}
    for topic in topics:
        schema = topic.record.model_json_schema()
        schema["title"] = topic.record.__name__
        schema["description"] = (f"Record on topic `<prefix>.{topic.name}` (JSON, key = "
                                 f"`{topic.record.key_field}`). " + (schema.get("description") or ""))
        out[f"{topic.name}.json"] = schema
    dead = DeadLetter.model_json_schema()
    dead["description"] = ("Record on every `<topic>.dlq` dead-letter topic: "
                           + (dead.get("description") or ""))
    out["dead-letter.json"] = dead
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(topics: tuple[Topic[Any], ...], directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(exist_ok=True)
    written = []
    for name, schema in topic_schemas(topics).items():
        path = directory / name
        path.write_text(render(schema))
        written.append(path)
    return written
