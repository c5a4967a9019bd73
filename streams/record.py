"""The base of every event record: versioned, typed, JSON on the wire, keyed."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """An event. Subclasses name the field that keys them (`key_field`).

    The key decides the partition, so every event of one image (keyed by image id)
    stays in order. `version` lets a consumer accept older producers: fields are
    only ever added with defaults, and a breaking change bumps the version.
    """

    model_config = ConfigDict(extra="ignore")

    key_field: ClassVar[str] = "id"
    version: int = 1

    @property
    def key(self) -> str:
        return str(getattr(self, self.key_field))

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Self:
        return cls.model_validate_json(data)
