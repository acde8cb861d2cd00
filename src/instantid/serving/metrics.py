"""Prometheus metrics (prometheus_client): queue depth, jobs by state and job latency read from the store
at scrape time (so they cover every worker sharing it), plus this process's API errors by code."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from .jobs import JobStore

LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class _StoreCollector:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self):
        counts = self.store.counts()
        yield GaugeMetricFamily("instantid_queue_depth", "jobs waiting to run", value=counts["queued"])
        jobs = GaugeMetricFamily("instantid_jobs", "stored jobs by state", labels=["state"])
        for state, count in counts.items():
            jobs.add_metric([state], count)
        yield jobs
        durations = self.store.durations()
        buckets, cumulative = [], 0
        for bound in LATENCY_BUCKETS:
            cumulative = sum(1 for d in durations if d <= bound)
            buckets.append((str(bound), cumulative))
        buckets.append(("+Inf", len(durations)))
        yield HistogramMetricFamily("instantid_job_seconds", "generation time of finished jobs (start to finish)",
                                    buckets=buckets, sum_value=sum(durations))


class Metrics:
    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(store))
        self.errors = Counter("instantid_api_errors", "API error responses by code", ["code"], registry=self.registry)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
