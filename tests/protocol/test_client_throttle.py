"""The client authentication throttle (issue 11): failed authentications per (client, address)
at /token, /revoke and /introspect; past the budget a failure is answered 429
`temporarily_unavailable` with Retry-After (RFC 6585 §4, RFC 6749 §5.2's form). It is consulted
on the failure path only: the client_credentials hot path stays one read and no write, and the
real client is never locked out."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from idp.settings import Settings
from tests.conftest import make_settings
from tests.helpers import RP, Harness, basic
from tests.token_helpers import ISSUER, error_of, statements

LIMIT = 3


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        tmp_path,
        throttle_client_limit=LIMIT,
        throttle_backoff_seconds=45,
        forwarded_allow_ips="testclient",
    )


def service(idp: Harness) -> RP:
    return idp.client(grant_types=["client_credentials"], scopes=["api"], redirect_uris=[])


def wrong(idp: Harness, rp: RP, path: str = "/token", ip: str = "203.0.113.7") -> httpx.Response:
    data = {"grant_type": "client_credentials"} if path == "/token" else {"token": "x"}
    headers = {**basic(rp.client_id, "wrong-secret"), "X-Forwarded-For": ip}
    return idp.http.post(path, data=data, headers=headers)


def test_failures_past_the_budget_get_429_temporarily_unavailable(idp: Harness) -> None:
    """The budget is shared by the three endpoints; then 429 with Retry-After, in §5.2 JSON."""
    rp = service(idp)
    answers = [wrong(idp, rp, path) for path in ("/token", "/revoke", "/introspect")]
    assert [a.status_code for a in answers] == [401] * LIMIT
    for path in ("/token", "/revoke", "/introspect"):
        refused = wrong(idp, rp, path)
        assert refused.status_code == 429, refused.text
        assert error_of(refused) == "temporarily_unavailable"
        assert 43 <= int(refused.headers["retry-after"]) <= 45  # the block began a moment ago
        assert refused.headers["cache-control"] == "no-store"
    # Another address has its own budget.
    assert wrong(idp, rp, ip="198.51.100.3").status_code == 401


def test_the_real_client_is_never_locked_out(idp: Harness) -> None:
    """A correct secret is never refused: guessing from the client's own network cannot stop
    it, and its successful grant reads one row and writes nothing before the response (the
    throttle is not asked)."""
    rp = service(idp)
    for _ in range(LIMIT + 1):
        wrong(idp, rp)
    with statements(idp.runtime.engine) as failing:
        assert wrong(idp, rp).status_code == 429
    assert any("throttle_counters" in statement for statement in failing)  # the probe sees it
    # The client read runs on the driver's cursor, below SQLAlchemy's events (see
    # test_token.py's hot-path test): any other statement, a throttle's above all, is seen.
    with statements(idp.runtime.engine) as seen:
        ok = idp.http.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "api"},
            headers={**rp.auth(), "X-Forwarded-For": "203.0.113.7"},
        )
    assert ok.status_code == 200, ok.text
    # Only the day's last_used_day write, sent after the response (test_token_last_used.py).
    assert [s for s in seen if "last_used_day" not in s] == [], seen


def test_an_unknown_client_id_is_counted_as_submitted(idp: Harness) -> None:
    """A client id that does not exist has a budget like any other: the answers are the same."""
    ghost = RP("no-such-client", "wrong-secret")
    statuses = [wrong(idp, ghost).status_code for _ in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429]


def test_fifty_parallel_wrong_secrets_get_the_budget_and_no_more(
    idp: Harness, app: FastAPI
) -> None:
    """Atomic on SQLite and PostgreSQL: fifty wrong secrets at once for one client from one
    address get at most the budget's 401s; every other answer is 429."""
    rp = service(idp)

    async def one() -> int:
        transport = httpx.ASGITransport(app=app, client=("testclient", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            response = await http.post(
                "/token",
                data={"grant_type": "client_credentials"},
                headers={**basic(rp.client_id, "wrong"), "X-Forwarded-For": "203.0.113.8"},
            )
            return response.status_code

    async def everyone() -> list[int]:
        return list(await asyncio.gather(*(one() for _ in range(50))))

    with ThreadPoolExecutor(1) as pool:
        statuses = pool.submit(asyncio.run, everyone()).result()
    assert statuses.count(401) == LIMIT
    assert statuses.count(429) == 50 - LIMIT
