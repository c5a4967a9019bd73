"""KSUID identifiers with a type prefix (`img_`, `acc_`, `key_`, `evt_`, `whk_`).

KSUIDs start with a big-endian timestamp, so their base62 strings sort by creation
time as plain bytes: ClickHouse's `String` ordering then lists newest or oldest
first without a separate time column in the key.
"""

from __future__ import annotations

import re
from typing import Literal

from ksuid import Ksuid

Prefix = Literal["img", "acc", "key", "evt", "whk", "ann"]

_ID_PATTERN = re.compile(r"^(img|acc|key|evt|whk|ann)_[0-9A-Za-z]{27}$")


def new_id(prefix: Prefix) -> str:
    """A fresh, time-sortable id such as `img_2Jb0f0vJ6t3m...`."""
    return f"{prefix}_{Ksuid()}"


def is_valid_id(value: str, prefix: Prefix | None = None) -> bool:
    """True when `value` is a well-formed id (of the given type, if one is named)."""
    match = _ID_PATTERN.match(value)
    return bool(match) and (prefix is None or match.group(1) == prefix)  # type: ignore[union-attr]
