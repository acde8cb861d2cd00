"""Prometheus metrics (prometheus_client): queue depth, jobs by state, job latency, per-worker claims and
their outcomes (lease expiries among them) and attempts, read from the store at scrape time (so they cover
every worker and replica sharing it), plus this process's API errors by code."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from .store import JobStore

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
        claims = GaugeMetricFamily("instantid_worker_jobs", "claims of stored jobs by worker (replica) and how "
                                   "they ended: claimed, done, failed, cancelled, expired (lease), released, running",
                                   labels=["worker", "outcome"])
        expiries = 0
        for worker, outcomes in sorted(self.store.claim_stats().items()):
            expiries += outcomes.get("expired", 0)
            for outcome, count in sorted(outcomes.items()):
                claims.add_metric([worker, outcome], count)
        yield claims
        yield GaugeMetricFamily("instantid_lease_expiries", "claims of stored jobs whose lease expired", value=expiries)
        attempts = GaugeMetricFamily("instantid_job_attempts", "stored jobs by how many times they were claimed",
                                     labels=["attempts"])
        for count, jobs in sorted(self.store.attempt_counts().items()):
            attempts.add_metric([str(count)], jobs)
        yield attempts


class Metrics:
    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(store))
        self.errors = Counter("instantid_api_errors", "API error responses by code", ["code"], registry=self.registry)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
