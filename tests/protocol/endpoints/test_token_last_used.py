"""POST /token records the day a client last got a token (clients.last_used_day, for the
client linter), at most once a day per process and after the response: the token itself
never waits on that write."""

from __future__ import annotations

import time

import pytest

from idp.protocol.endpoints import token as endpoint
from idp.store import clients
from tests.helpers import RP, Harness
from tests.token_helpers import statements


@pytest.fixture
def service(idp: Harness) -> RP:
    return idp.client(grant_types=["client_credentials"], scopes=["api.read"], redirect_uris=[])


def last_used_day(idp: Harness, client_id: str) -> int | None:
    with idp.runtime.sessions.begin() as db:
        client = clients.get(db, client_id)
        assert client is not None
        return client.last_used_day


def usage_writes(seen: list[str]) -> list[str]:
    return [s for s in seen if s.lstrip().upper().startswith("UPDATE CLIENTS")]


def test_two_tokens_in_a_day_write_once(idp: Harness, service: RP) -> None:
    """RFC 6749 §4.4: client_credentials tokens; the first of the day writes the day, the
    second issues no statement for it."""
    today = int(time.time() // 86400)
    assert last_used_day(idp, service.client_id) is None
    with statements(idp.runtime.engine) as seen:
        assert idp.client_credentials(service).status_code == 200
        assert idp.client_credentials(service).status_code == 200
    assert len(usage_writes(seen)) == 1, seen
    assert last_used_day(idp, service.client_id) == today


def test_the_next_day_writes_again(
    idp: Harness, service: RP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memo holds one day per client: a token on a later day records that day."""
    assert idp.client_credentials(service).status_code == 200
    tomorrow = time.time() + 86400
    monkeypatch.setattr(endpoint.time, "time", lambda: tomorrow)
    with statements(idp.runtime.engine) as seen:
        assert idp.client_credentials(service).status_code == 200
    assert len(usage_writes(seen)) == 1
    assert last_used_day(idp, service.client_id) == int(tomorrow // 86400)


def test_a_code_exchange_records_the_day(idp: Harness) -> None:
    """RFC 6749 §4.1.3: tokens from an authorization code mark the client used too."""
    rp = idp.client()
    idp.user()
    idp.tokens(rp)
    assert last_used_day(idp, rp.client_id) == int(time.time() // 86400)


def test_a_failed_request_records_nothing(idp: Harness, service: RP) -> None:
    """RFC 6749 §5.2: a refused request (here invalid_scope) is not a use of the client."""
    response = idp.client_credentials(service, scope="not-granted")
    assert response.status_code == 400
    assert last_used_day(idp, service.client_id) is None


def test_the_day_never_moves_back(idp: Harness, service: RP) -> None:
    """A worker whose clock is a day behind cannot undo a later day: the UPDATE only raises it."""
    with idp.runtime.sessions.begin() as db:
        assert clients.mark_used(db, service.client_id, 20_001)
        assert not clients.mark_used(db, service.client_id, 20_000)
    assert last_used_day(idp, service.client_id) == 20_001
