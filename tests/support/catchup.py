"""The projection workers catching up from the event store alone, with no Kafka."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flightbook.projections.worker import ProjectionWorker

if TYPE_CHECKING:
    from confluent_kafka import Consumer

    from flightbook.projections.services import ProjectionServices

READ_MODELS = ("flights", "bookings")


def catch_up(services: ProjectionServices, reason: str) -> list[ProjectionWorker]:
    """Each read model's worker applies the log up to the head; the workers, in that order."""
    workers = []
    for name in READ_MODELS:
        worker = ProjectionWorker(
            engine=services.engine(name),
            progress=services.progress,
            reader=services.reader,
            consumer_factory=_no_kafka,
            topic="unused",
        )
        worker.catch_up(reason)
        workers.append(worker)
    return workers


def _no_kafka() -> Consumer:
    raise AssertionError("catch-up does not need Kafka")
