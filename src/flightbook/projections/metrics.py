"""The projection worker's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ("WorkerMetrics",)


class WorkerMetrics:
    """Counters, gauges and histograms of one worker, in its registry."""

    def __init__(self, registry: CollectorRegistry, read_model: str, context: str) -> None:
        rm = {"read_model": read_model}
        self.applied = Counter(
            "flightbook_projection_events_applied_total",
            "Aggregate versions applied to the read model",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.duplicates = Counter(
            "flightbook_projection_duplicates_total",
            "Messages skipped because their aggregate version was already applied",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.repaired = Counter(
            "flightbook_projection_repaired_total",
            "Aggregate versions read from the event store to fill a gap",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.dead_letters = Counter(
            "flightbook_projection_dead_letters_total",
            "Messages that could not be decoded or applied (stored as dead letters)",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.batches = Counter(
            "flightbook_projection_batches_total",
            "Batches applied, by source (kafka or eventstore)",
            ["read_model", "source"],
            registry=registry,
        )
        self.catch_ups = Counter(
            "flightbook_projection_catch_ups_total",
            "Catch-ups from the event store, by reason",
            ["read_model", "reason"],
            registry=registry,
        )
        self.errors = Counter(
            "flightbook_projection_errors_total",
            "Failed attempts (retried), by kind",
            ["read_model", "kind"],
            registry=registry,
        )
        self.analytics_keys = Counter(
            "flightbook_projection_analytics_keys_recomputed_total",
            "Stale analytics keys (days) recomputed from the documents",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.analytics_duration = Histogram(
            "flightbook_projection_analytics_refresh_seconds",
            "Time to recompute the stale analytics keys once",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        self.duration = Histogram(
            "flightbook_projection_batch_duration_seconds",
            "Time to decode, apply and commit one batch",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        gauge_labels = ["read_model", "context"]
        self.low_watermark = Gauge(
            "flightbook_projection_low_watermark",
            "Every event at or below this position is applied",
            gauge_labels,
            registry=registry,
        ).labels(read_model, context)
        self.max_applied = Gauge(
            "flightbook_projection_max_applied_position",
            "Highest position applied",
            gauge_labels,
            registry=registry,
        ).labels(read_model, context)
        self.head = Gauge(
            "flightbook_projection_head_position",
            "Highest position of the context's event log",
            gauge_labels,
            registry=registry,
        ).labels(read_model, context)
        self.lag_positions = Gauge(
            "flightbook_projection_lag_positions",
            "Event-log head minus low watermark",
            gauge_labels,
            registry=registry,
        ).labels(read_model, context)
        self.lag_seconds = Gauge(
            "flightbook_projection_lag_seconds",
            "Age of the oldest event not known to be applied (0 when caught up)",
            gauge_labels,
            registry=registry,
        ).labels(read_model, context)
        self.active = Gauge(
            "flightbook_projection_active_version",
            "Active version of the read model",
            ["read_model"],
            registry=registry,
        )
        self.building = Gauge(
            "flightbook_projection_building_version",
            "Version being rebuilt (0: none)",
            ["read_model"],
            registry=registry,
        )
        self.pending_letters = Gauge(
            "flightbook_projection_dead_letters_pending",
            "Dead letters not replayed yet",
            ["read_model"],
            registry=registry,
        ).labels(**rm)
        for source in ("kafka", "eventstore"):
            self.batches.labels(read_model, source)
        for kind in ("transient", "other"):
            self.errors.labels(read_model, kind)
