"""Prometheus metrics, in a registry of the app's own (never the process-global one)."""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .feed import Feed


@dataclasses.dataclass(frozen=True, slots=True)
class Metrics:
    """The receiver's collectors."""

    registry: CollectorRegistry
    webhooks: Counter
    requests: Counter
    latency: Histogram
    waits_refused: Counter
    batch_sizes: Histogram

    def observe_request(self, _method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request (labelled by its route, never its path)."""
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)


def create_metrics(feed: Feed) -> Metrics:
    """A fresh registry with every collector, the waiters gauge reading ``feed``."""
    registry = CollectorRegistry()
    waiters = Gauge(
        "receiver_feed_waiters", "Long-polls blocked on the change feed now.", registry=registry
    )
    waiters.set_function(lambda: feed.waiters)
    return Metrics(
        registry=registry,
        webhooks=Counter(
            "receiver_webhooks_received",
            "Webhooks received, by result (verified, duplicate, heartbeat, invalid, not_stored).",
            ["result"],
            registry=registry,
        ),
        requests=Counter(
            "receiver_http_requests",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
            registry=registry,
        ),
        latency=Histogram(
            "receiver_http_request_duration_seconds",
            "Time to answer, by route (long-polls include their wait).",
            ["route"],
            registry=registry,
        ),
        waits_refused=Counter(
            "receiver_feed_waits_refused",
            "Long-polls answered 503 because every waiting slot was taken.",
            registry=registry,
        ),
        batch_sizes=Histogram(
            "receiver_ingest_batch_size",
            "Writes (webhooks, heartbeats, receipts) committed together, per transaction.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
            registry=registry,
        ),
    )
