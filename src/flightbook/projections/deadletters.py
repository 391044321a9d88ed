"""Dead letters: what could not be decoded or applied, kept with its error to replay later."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flightbook.contracts.envelope import encoder
from flightbook.projections.ports import DeadLetter

if TYPE_CHECKING:
    import datetime as dt

    from confluent_kafka import Message

    from flightbook.contracts.envelope import Envelope

__all__ = ("error_text", "letter_for_envelope", "letter_for_message")


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 2000 else text[:1997] + "..."


def letter_for_envelope(
    read_model: str, context: str, envelope: Envelope, exc: BaseException, at: dt.datetime
) -> DeadLetter:
    """A dead letter for an event read from the event store (catch-up, rebuild, replay)."""
    return DeadLetter(
        id=f"{read_model}:eventstore:{context}:{envelope.position}",
        read_model=read_model,
        topic=f"eventstore:{context}",
        partition=0,
        offset=envelope.position,
        key=str(envelope.aggregate_id),
        raw=encoder.encode(envelope).decode(),
        error=error_text(exc),
        failed_at=at,
    )


def letter_for_message(
    read_model: str, message: Message, exc: BaseException, at: dt.datetime
) -> DeadLetter:
    """A dead letter for a Kafka message that could not be decoded or applied."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    key = message.key()
    value = message.value() or b""
    return DeadLetter(
        id=f"{read_model}:{topic}:{partition}:{offset}",
        read_model=read_model,
        topic=str(topic),
        partition=int(partition or 0),
        offset=int(offset or 0),
        key=key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key,
        raw=value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value,
        error=error_text(exc),
        failed_at=at,
    )
