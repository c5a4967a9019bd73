"""What both runners do with a batch of raw messages: decode, handle, retry, dead-letter.

Keeping this in one place is what gives the in-process bus and Faust the same
semantics. A message that cannot be decoded, or whose handler keeps raising,
goes to `<topic>.dlq` with the error, and the stream goes on: one poison record
never blocks a partition and is never dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import ValidationError

from streams.record import Record
from streams.topology import Agent, Emit, Topic

log = logging.getLogger("imgkit.streams")

RETRY_BASE_DELAY = 0.2


class DeadLetter(Record):
    """A message an agent could not handle, with why. Replayable: `payload` is the original."""

    key_field = "message_key"
    message_key: str = ""
    source_topic: str
    agent: str
    error: str
    payload: str
    attempts: int
    failed_at: datetime


def dead_letter_topic(source: Topic[Record]) -> Topic[DeadLetter]:
    return Topic(f"{source.name}.dlq", DeadLetter)


def _dead(agent: Agent, payload: bytes, key: str, error: str, attempts: int) -> Emit:
    letter = DeadLetter(message_key=key, source_topic=agent.source.name, agent=agent.name,
                        error=error[:4000], payload=payload.decode("utf-8", "replace"),
                        attempts=attempts, failed_at=datetime.now(UTC))
    return Emit(dead_letter_topic(agent.source), letter)


async def _attempt(agent: Agent, records: Sequence[Record]) -> Sequence[Emit] | BaseException:
    delay = RETRY_BASE_DELAY
    last: BaseException | None = None
    for attempt in range(1, agent.max_attempts + 1):
        try:
            emits = await agent.handler(records)
            for emit in emits:
                if emit.topic not in agent.outputs:
                    raise ValueError(f"agent {agent.name!r} emitted to undeclared topic "
                                     f"{emit.topic.name!r}")
            return emits
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            last = exc
            log.warning("agent failed", extra={"agent": agent.name, "attempt": attempt,
                                               "batch": len(records), "error": repr(exc)})
            if attempt < agent.max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
    assert last is not None
    return last


async def handle_messages(agent: Agent, messages: Sequence[bytes]) -> list[Emit]:
    """Decode and handle a batch; return every record to publish before acknowledging it."""
    emits: list[Emit] = []
    records: list[Record] = []
    payloads: list[bytes] = []
    for raw in messages:
        try:
            records.append(agent.source.decode(raw))
            payloads.append(raw)
        except ValidationError as exc:
            log.error("undecodable message", extra={"agent": agent.name, "error": str(exc)[:500]})
            emits.append(_dead(agent, raw, "", f"invalid record: {exc}", 0))
    if not records:
        return emits
    outcome = await _attempt(agent, records)
    if not isinstance(outcome, BaseException):
        return emits + list(outcome)
    if len(records) == 1:
        log.error("dead-lettered", extra={"agent": agent.name, "key": records[0].key,
                                          "error": repr(outcome)})
        return [*emits, _dead(agent, payloads[0], records[0].key, repr(outcome), agent.max_attempts)]
    # A batch failed: isolate the poison record(s) by handling one at a time.
    for record, raw in zip(records, payloads, strict=True):
        single = await _attempt(agent, [record])
        if isinstance(single, BaseException):
            log.error("dead-lettered", extra={"agent": agent.name, "key": record.key,
                                              "error": repr(single)})
            emits.append(_dead(agent, raw, record.key, repr(single), agent.max_attempts))
        else:
            emits.extend(single)
    return emits
