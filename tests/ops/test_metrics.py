"""/metrics (issue 15): Prometheus text counted after real requests: requests by route and
status with latency, sign-ins by factor, tokens by grant and client type, refresh reuse,
throttled requests, security events by kind, signing key age and pending back-channel
logouts; answered to loopback, or anywhere with IDP_METRICS_TOKEN."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from idp.ops import metrics
from idp.store import logout_deliveries
from tests.conftest import ISSUER, make_settings, migrated_app
from tests.helpers import Harness
from tests.refresh_helpers import OFFLINE_SCOPE, age_use, offline_client, refresh

TOKEN = "metrics-scraper-token-0123456789"
LOOPBACK = ("127.0.0.1", 40000)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def loopback(app: FastAPI) -> TestClient:
    """A client connecting from loopback, as a scraper on the same machine does (without a
    lifespan of its own: the app's is the test's other client's)."""
    return TestClient(app, base_url=ISSUER, client=LOOPBACK)


@pytest.fixture
def scraped(idp: Harness) -> TestClient:
    return loopback(idp.app)


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return samples(response.text)


def test_other_addresses_are_refused_without_the_token(idp: Harness) -> None:
    """The test client's address is not loopback: a scrape from elsewhere."""
    refused = idp.http.get("/metrics")
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


def test_the_token_opens_metrics_from_anywhere_and_a_wrong_one_from_nowhere(
    database_url: str, tmp_path: Path
) -> None:
    app = migrated_app(make_settings(database_url, tmp_path, metrics_token=TOKEN))
    local = loopback(app)
    with TestClient(app, base_url=ISSUER) as remote:
        assert (
            remote.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        )
        assert remote.get("/metrics").status_code == 403
        wrong = {"Authorization": "Bearer not-the-token"}
        assert remote.get("/metrics", headers=wrong).status_code == 403
        assert local.get("/metrics", headers=wrong).status_code == 403
        assert local.get("/metrics").status_code == 200
    app.state.runtime.engine.dispose()


def test_requests_are_counted_by_route_template_and_status(
    idp: Harness, scraped: TestClient
) -> None:
    before = scrape(scraped)
    for _ in range(3):
        idp.http.get("/clients/some-id/logo")
    idp.http.get("/health/live")
    after = scrape(scraped)
    route = {"route": "/clients/{client_id}/logo", "method": "GET", "status": "404"}
    name = "idp_http_requests_total"
    assert value(after, name, **route) - value(before, name, **route) == 3
    latency = "idp_http_request_duration_seconds_count"
    labels = {"route": "/clients/{client_id}/logo", "method": "GET"}
    assert value(after, latency, **labels) - value(before, latency, **labels) == 3


def test_tokens_sign_ins_reuse_and_security_events_are_counted(
    idp: Harness, scraped: TestClient
) -> None:
    idp.user()
    rp = offline_client(idp)
    service = idp.client(grant_types=["client_credentials"], scopes=["api"], redirect_uris=[])
    before = scrape(scraped)
    assert idp.client_credentials(service).status_code == 200
    idp.login(password="wrong password entirely")
    tokens = idp.tokens(rp, scope=OFFLINE_SCOPE)  # signs in with the password (amr pwd)
    refreshed = refresh(idp, rp, tokens["refresh_token"])
    assert refreshed.status_code == 200
    age_use(idp, tokens["refresh_token"], 3600)  # past the grace for a lost response
    assert refresh(idp, rp, tokens["refresh_token"]).status_code == 400  # reuse
    after = scrape(scraped)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    tokens_name = "idp_tokens_issued_total"
    assert grew(tokens_name, grant="client_credentials", client_type="confidential") == 1
    assert grew(tokens_name, grant="authorization_code", client_type="confidential") == 1
    assert grew(tokens_name, grant="refresh_token", client_type="confidential") == 1
    assert grew("idp_sign_ins_total", factor="pwd", outcome="succeeded") == 1
    assert grew("idp_sign_ins_total", factor="pwd", outcome="failed") == 1
    assert grew("idp_refresh_token_reuse_total") == 1
    assert grew("idp_security_events_total", event="refresh.reused") == 1
    assert grew("idp_security_events_total", event="login.failed") == 1


def test_throttled_requests_are_counted(database_url: str, tmp_path: Path) -> None:
    """A 429 (here: too many sign-ins started from one address) counts as throttled."""
    settings = make_settings(database_url, tmp_path, interactions_per_ip_per_minute=1)
    app = migrated_app(settings)
    local = loopback(app)
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as http:
        idp = Harness(app, http)
        rp = idp.client()
        before = scrape(local)
        statuses = [idp.authorize(rp).status_code for _ in range(3)]
        after = scrape(local)
    app.state.runtime.engine.dispose()
    assert statuses.count(429) == 2
    name = "idp_throttled_total"
    assert value(after, name, route="/authorize") - value(before, name, route="/authorize") == 2


def test_database_gauges_key_age_and_pending_logouts(idp: Harness, scraped: TestClient) -> None:
    found = scrape(scraped)
    ages = [v for (name, _), v in found.items() if name == "idp_signing_key_age_seconds"]
    assert ages and all(age >= 0 for age in ages)
    assert value(found, "idp_backchannel_logout_pending") == 0
    rp = idp.client(backchannel_logout_uri="http://127.0.0.1:9/logout")
    with idp.runtime.sessions.begin() as db:
        logout_deliveries.enqueue(db, rp.client_id, "http://127.0.0.1:9/logout", {"sid": "x"})
    assert value(scrape(scraped), "idp_backchannel_logout_pending") == 1


def test_a_tally_written_at_once_counts_as_each_request_would() -> None:
    """With several workers each worker sums its requests in memory and writes the sums to its
    files once a second (idp.ops.metrics.RequestTally): after a flush, the request counter and
    every latency bucket, its sum and count hold what observing each request would have."""
    route = "/tally-test"
    latencies = [0.0004, 0.001, 0.0011, 0.003, 0.03, 0.3, 3.0, 30.0]
    tally = metrics.RequestTally()
    for seconds in latencies:
        tally.add((route, "GET", 200), seconds)
    tally.add((route, "GET", 404), 0.002)
    assert samples_of(route) == {}  # nothing written before the flush
    tally.flush()
    written = samples_of(route)
    for seconds in [*latencies, 0.002]:
        metrics.LATENCY.labels("/tally-observed", "GET").observe(seconds)
    for status, n in (("200", len(latencies)), ("404", 1)):
        metrics.REQUESTS.labels("/tally-observed", "GET", status).inc(n)
    assert written == samples_of("/tally-observed")
    assert written[("idp_http_requests_total", (("method", "GET"), ("status", "200")))] == len(
        latencies
    )
    tally.flush()  # nothing pending: nothing added twice
    assert samples_of(route) == written


def samples_of(route: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """This process's samples of the request metrics for `route`, by name and other labels."""
    found = {}
    for family in (metrics.REQUESTS, metrics.LATENCY):
        for metric in family.collect():
            for sample in metric.samples:
                if sample.labels.get("route") == route and not sample.name.endswith("_created"):
                    others = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "route"))
                    found[(sample.name, others)] = sample.value
    return found
