"""Issue 15, security events: a revoked access token presented at userinfo or introspection is
recorded (`token.revoked_used`, what revoked it and where it was used), tallied per minute so a
replayed token cannot flood the trail. The answers stay those of RFC 6750 §3.1 (invalid_token)
and RFC 7662 §2.2 (`active: false`)."""

from __future__ import annotations

from typing import Any

from idp.admin import revocation
from tests.helpers import Harness
from tests.refresh_helpers import introspected, resource_server, revoke, userinfo
from tests.token_helpers import audit_events, json_of

EVENT = "token.revoked_used"


def used(idp: Harness) -> list[dict[str, Any]]:
    return [
        {"client_id": client_id, "user_id": user_id, **json_of(detail)}
        for client_id, user_id, detail in audit_events(idp, EVENT)
    ]


def test_a_revoked_token_at_userinfo_is_a_security_event(idp: Harness) -> None:
    user_id = idp.user()
    rp = idp.client()
    token = idp.tokens(rp)["access_token"]
    assert revoke(idp, rp, token).status_code == 200
    for _ in range(2):
        refused = userinfo(idp, token)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    [event] = used(idp)
    assert (event["client_id"], event["user_id"]) == (rp.client_id, user_id)
    assert (event["at_endpoint"], event["why"], event["count"]) == ("userinfo", "revoked", 2)


def test_a_disabled_users_token_at_introspection_is_a_security_event(idp: Harness) -> None:
    """The resource server learns only `active: false`; the trail says the user's access was
    revoked and a token of theirs is still going round."""
    user_id = idp.user()
    rp = idp.client()
    api = resource_server(idp)
    token = idp.tokens(rp)["access_token"]
    with idp.runtime.sessions.begin() as db:
        revocation.disable_user(db, user_id, actor="cli", reason="left")
    assert introspected(idp, api, token) == {"active": False}
    [event] = used(idp)
    assert (event["at_endpoint"], event["why"], event["user_id"]) == (
        "introspection",
        "user",
        user_id,
    )


def test_a_disabled_clients_service_token_names_the_client(idp: Harness) -> None:
    service = idp.client(grant_types=["client_credentials"], scopes=["api"], redirect_uris=[])
    api = resource_server(idp)
    token = idp.client_credentials(service).json()["access_token"]
    with idp.runtime.sessions.begin() as db:
        revocation.disable_client(db, service.client_id, actor="cli", reason="compromised")
    assert introspected(idp, api, token) == {"active": False}
    [event] = used(idp)
    assert (event["why"], event["client_id"], event["user_id"]) == (
        "client",
        service.client_id,
        None,
    )


def test_tokens_that_are_merely_invalid_or_for_someone_else_are_not_events(
    idp: Harness,
) -> None:
    """Only a token this server issued and then revoked is misuse worth an event: garbage, or
    another resource server's token, is not."""
    idp.user()
    rp = idp.client()
    token = idp.tokens(rp)["access_token"]
    assert userinfo(idp, "not.a.token").status_code == 401
    assert revoke(idp, rp, token).status_code == 200
    other_api = resource_server(idp, resources=["https://elsewhere.example"])
    assert introspected(idp, other_api, token) == {"active": False}
    assert used(idp) == []
