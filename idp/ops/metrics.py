"""Prometheus metrics (prometheus-client), counted where things happen and served at /metrics.

Counters and histograms live in the process; with several uvicorn workers, `idp serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh folder before any worker starts, each worker writes its
values there, and whichever worker a scrape reaches adds them all up (prometheus-client's
multiprocess mode). What is a fact of the database (the age of each active signing key, the
back-channel logouts still to deliver) is read from it at the scrape, so every worker says the
same.

Labels are closed sets (route templates, event names, grant types), never a caller's input.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from idp.store import keys as key_store, logout_deliveries
from idp.store.base import now
from idp.store.keys import KeyState

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter(
    "idp_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
LATENCY = Histogram(
    "idp_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
THROTTLED = Counter(
    "idp_throttled_total", "Requests refused by a throttle or a limit (HTTP 429)", ["route"]
)
SIGN_INS = Counter(
    "idp_sign_ins_total",
    "Sign-in steps by factor (the amr of a success; the factor tried of a failure)",
    ["factor", "outcome"],
)
TOKENS = Counter("idp_tokens_issued_total", "Access tokens issued", ["grant", "client_type"])
REFRESH_REUSE = Counter(
    "idp_refresh_token_reuse_total", "Rotated refresh tokens presented again (family revoked)"
)
SECURITY_EVENTS = Counter(
    "idp_security_events_total", "Security events written to the audit trail", ["event"]
)
WEBHOOK_DELIVERIES = Counter(
    "idp_security_webhook_deliveries_total",
    "Attempts to send a security event to IDP_SECURITY_WEBHOOK_URL, by outcome",
    ["outcome"],
)
OWN = (
    REQUESTS,
    LATENCY,
    THROTTLED,
    SIGN_INS,
    TOKENS,
    REFRESH_REUSE,
    SECURITY_EVENTS,
    WEBHOOK_DELIVERIES,
)


# --- counting ------------------------------------------------------------------------------------


# Each (route, method, status)'s counter and histogram, found once: labels() takes a lock and
# builds a key on every call, a measurable share of the token endpoint's time. The set is
# closed (route templates), so this stays small.
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

# How often a worker in multiprocess mode writes the requests it counted to its files.
FLUSH_SECONDS = 1.0


def _children_of(key: tuple[str, str, int]) -> tuple[Any, Any]:
    children = _children.get(key)
    if children is None:
        route, method, status = key
        children = (REQUESTS.labels(route, method, str(status)), LATENCY.labels(route, method))
        _children[key] = children
    return children


class RequestTally:
    """With several workers (multiprocess mode) each counter increment and histogram
    observation is a locked write to a memory-mapped file: three for every request, 13 % of a
    JWKS request's CPU (measured: 20,300-21,100 against 23,800-24,000 per CPU-second, one
    worker either way), which was all that a second worker lost there. So a worker adds its
    requests up in memory and writes the sums to its files once a second (FLUSH_SECONDS),
    before each scrape it answers, and at its shutdown: a scrape may miss up to a second of
    another worker's requests, never count one twice, and a worker killed outright loses its
    last second."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (route, method, status) -> [requests per latency bucket..., total seconds]
        self._pending: dict[tuple[str, str, int], list[float]] = {}
        self._flusher: threading.Thread | None = None

    def add(self, key: tuple[str, str, int], seconds: float) -> None:
        bounds = LATENCY._upper_bounds
        with self._lock:
            times = self._pending.get(key)
            if times is None:
                times = self._pending[key] = [0.0] * (len(bounds) + 1)
            times[bisect_left(bounds, seconds)] += 1  # the first bucket with seconds <= bound
            times[-1] += seconds
        if self._flusher is None:
            self._start()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for key, times in pending.items():
            counter, histogram = _children_of(key)
            counter.inc(sum(times[:-1]))
            # prometheus-client has no bulk observe(): its children's buckets and sum, which
            # observe() itself increments (the same since 0.4), take the sums at once.
            for bucket, count in zip(histogram._buckets, times[:-1], strict=True):
                if count:
                    bucket.inc(count)
            histogram._sum.inc(times[-1])

    def _start(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(
                target=self._flush_every_second, name="idp-metrics", daemon=True
            )
        self._flusher.start()

    def _flush_every_second(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()


# Only with several workers: in one process an increment is an addition under a lock, as cheap
# as the tally's own.
TALLY = RequestTally() if os.environ.get(MULTIPROC_ENV) else None


def request_answered(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method, status)
    if TALLY is not None:
        TALLY.add(key, seconds)
    else:
        counter, histogram = _children_of(key)
        counter.inc()
        histogram.observe(seconds)
    if status == 429:
        THROTTLED.labels(route).inc()


def flush() -> None:
    """Write what this worker counted and has not written yet (multiprocess mode)."""
    if TALLY is not None:
        TALLY.flush()


def token_issued(grant: str, public: bool) -> None:
    TOKENS.labels(grant, "public" if public else "confidential").inc()


# Audit events that are sign-in steps: (outcome, the detail key naming the factor, its default).
_SIGN_IN_EVENTS = {
    "login.succeeded": ("succeeded", "amr", "pwd"),
    "login.failed": ("failed", "factor", "pwd"),
    "mfa.failed": ("failed", "factor", "otp"),
    "webauthn.failed": ("failed", "factor", "passkey"),
}


def audit_event(event: str, security: bool, detail: Mapping[str, object]) -> None:
    """Count what an audit event says (idp.audit.events.record calls this for each one)."""
    if event in _SIGN_IN_EVENTS:
        outcome, key, default = _SIGN_IN_EVENTS[event]
        SIGN_INS.labels(str(detail.get(key) or default), outcome).inc()
    if event == "refresh.reused":
        REFRESH_REUSE.inc()
    if security:
        SECURITY_EVENTS.labels(event).inc()


def webhook_delivery(outcome: str) -> None:
    """One attempt of the security webhook: delivered, failed (tried again later) or gave_up."""
    WEBHOOK_DELIVERIES.labels(outcome).inc()


# --- serving -------------------------------------------------------------------------------------


class DatabaseFacts(Collector):
    """Gauges read from the database at the scrape: the same on every worker."""

    def __init__(self, reads: sessionmaker[Session]) -> None:
        self.reads = reads

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ages = GaugeMetricFamily(
            "idp_signing_key_age_seconds",
            "Time since each active signing key was activated",
            labels=["alg", "kid"],
        )
        pending = GaugeMetricFamily(
            "idp_backchannel_logout_pending",
            "Back-channel logout deliveries neither delivered nor given up on",
        )
        ts = now()
        with self.reads() as db:
            for key in key_store.all_keys(db):
                if key.state == KeyState.ACTIVE:
                    ages.add_metric([key.alg, key.kid], ts - (key.activated_at or key.created_at))
            pending.add_metric([], logout_deliveries.pending(db))
        yield ages
        yield pending


def exposition(reads: sessionmaker[Session]) -> bytes:
    """The text a scrape gets: this process's metrics, or every worker's in multiprocess
    mode, plus the database's gauges."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        flush()  # this worker's own requests, up to this one
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in OWN:
            registry.register(collector)
    registry.register(DatabaseFacts(reads))
    return generate_latest(registry)
