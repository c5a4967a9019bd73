"""Small helpers both stores use to turn records into ClickHouse rows and back."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, overload


class Revisioned(Protocol):
    @property
    def revision(self) -> int: ...


E = TypeVar("E", bound=Revisioned)


def to_json(value: Any) -> str:
    """JSON for a String column; "" stands for None (ClickHouse columns are not Nullable)."""
    return "" if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def from_json(text: str) -> Any:
    return json.loads(text) if text else None


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
@overload
def utc(value: datetime | None) -> datetime | None: ...
def utc(value: datetime | None) -> datetime | None:
    """ClickHouse returns naive UTC datetimes; EXIF times without an offset are kept as given."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def latest_by(events: Iterable[E], key: Callable[[E], str]) -> list[E]:
    """The newest revision of each key in a batch: a replayed or superseded event is not
    written (the table would keep the newest anyway; this saves the rows)."""
    latest: dict[str, E] = {}
    for event in events:
        k = key(event)
        if k not in latest or event.revision >= latest[k].revision:
            latest[k] = event
    return list(latest.values())
