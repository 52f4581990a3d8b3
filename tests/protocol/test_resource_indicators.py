"""RFC 8707 resource indicators: `resource` at /authorize (§2.1) and /token (§2.2) picks the
audiences of an access token among those the client is registered for (`--audience`,
repeatable, the first the default); anything else is `invalid_target` (§2)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from idp.admin.clients import update_client
from tests.conftest import ISSUER
from tests.helpers import RP, Harness, query_of
from tests.refresh_helpers import (
    REFRESH_GRANTS,
    introspected,
    refresh,
    resource_server,
    userinfo,
)

NOTES = "https://notes.example"
BILLING = "urn:example:billing"
OTHER = "https://other.example"


def aud(idp: Harness, access_token: str) -> Any:
    return idp.decode(access_token).claims["aud"]


def error_of(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["cache-control"] == "no-store"
    return str(response.json()["error"])


@pytest.fixture
def app_rp(idp: Harness) -> RP:
    """A web app whose tokens may be for the notes API (its default) or billing."""
    idp.user()
    return idp.client(grant_types=REFRESH_GRANTS, audiences=[NOTES, BILLING])


@pytest.fixture
def service(idp: Harness) -> RP:
    return idp.client(
        grant_types=["client_credentials"],
        scopes=["reports"],
        redirect_uris=[],
        audiences=[NOTES, BILLING],
    )


def token_request(idp: Harness, rp: RP, **data: Any) -> httpx.Response:
    return idp.http.post("/token", data=data, headers=rp.auth())


def exchange(idp: Harness, rp: RP, code: str, **data: Any) -> httpx.Response:
    return token_request(
        idp,
        rp,
        grant_type="authorization_code",
        code=code,
        redirect_uri=rp.redirect_uri,
        code_verifier=rp.verifier,
        **data,
    )


# --- /authorize (§2.1) ---------------------------------------------------------------------------


def test_without_resource_the_token_is_for_the_clients_default(idp: Harness, app_rp: RP) -> None:
    """RFC 9068 §3: no resource named, the default audience (the first registered), plus the
    issuer so that the token opens userinfo (scope openid)."""
    tokens = idp.tokens(app_rp)
    assert aud(idp, tokens["access_token"]) == [NOTES, ISSUER]
    assert userinfo(idp, tokens["access_token"]).status_code == 200


def test_a_resource_named_at_authorize_is_the_audience(idp: Harness, app_rp: RP) -> None:
    """§2.1: the authorization request names the resource; the access token is for it."""
    tokens = idp.tokens(app_rp, resource=BILLING)
    assert aud(idp, tokens["access_token"]) == [BILLING, ISSUER]
    # A resource server of billing learns of it; one of notes does not (RFC 7662 §4).
    billing = introspected(idp, resource_server(idp, resources=[BILLING]), tokens["access_token"])
    assert billing["active"] is True
    notes = introspected(idp, resource_server(idp, resources=[NOTES]), tokens["access_token"])
    assert notes == {"active": False}


def test_several_resources_then_one_of_them_per_token(idp: Harness, app_rp: RP) -> None:
    """§2.1 allows several resource parameters; §2.2: the token request narrows the grant to
    the one the access token is for."""
    code = idp.code_for(app_rp, resource=[NOTES, BILLING])
    both_then_one = exchange(idp, app_rp, code, resource=BILLING)
    assert both_then_one.status_code == 200, both_then_one.text
    assert aud(idp, both_then_one.json()["access_token"]) == [BILLING, ISSUER]


def test_several_resources_without_narrowing_give_a_token_for_all(idp: Harness, app_rp: RP) -> None:
    tokens = idp.tokens(app_rp, resource=[BILLING, NOTES])
    assert aud(idp, tokens["access_token"]) == [BILLING, NOTES, ISSUER]


@pytest.mark.parametrize(
    "resource",
    [
        OTHER,  # not registered for this client
        "/relative",  # §2: an absolute URI
        "https://notes.example#part",  # §2: without a fragment
        ISSUER,  # this server is userinfo's audience, not an API a client picks
    ],
)
def test_an_unknown_or_malformed_resource_is_invalid_target(
    idp: Harness, app_rp: RP, resource: str
) -> None:
    """§2: invalid_target, sent to the validated redirect_uri (RFC 6749 §4.1.2.1) with the
    state and RFC 9207's iss, before anyone is asked to sign in."""
    response = idp.authorize(app_rp, resource=resource)
    assert response.status_code in (302, 303)
    location = response.headers["location"]
    assert location.startswith(app_rp.redirect_uri)
    answer = query_of(location)
    assert answer["error"] == "invalid_target"
    assert answer["state"] == app_rp.state and answer["iss"] == ISSUER


def test_a_client_without_audiences_may_name_the_server_default(idp: Harness) -> None:
    """A client registered for no API has the server-wide default audience alone."""
    idp.user()
    rp = idp.client()
    assert aud(idp, idp.tokens(rp, resource=ISSUER)["access_token"]) == ISSUER
    refused = query_of(idp.authorize(rp, resource=NOTES).headers["location"])
    assert refused["error"] == "invalid_target"


def test_an_audience_removed_while_the_user_signs_in_gets_no_code(idp: Harness, app_rp: RP) -> None:
    """The registration as it is when the code is issued decides: a resumed sign-in is checked
    again, so an API taken away from the client meanwhile is refused."""
    pending = idp.authorize(app_rp, resource=BILLING)
    assert pending.headers["location"].startswith("/login")
    with idp.runtime.sessions.begin() as db:
        update_client(
            db, app_rp.client_id, {"audiences": [NOTES]}, "cli", policy=idp.runtime.outbound
        )
    answer = query_of(idp.follow_to_code(pending, app_rp).headers["location"])
    assert answer["error"] == "invalid_target"


# --- /token (§2.2) -------------------------------------------------------------------------------


def test_a_token_request_beyond_the_grant_is_refused_and_the_code_survives(
    idp: Harness, app_rp: RP
) -> None:
    """§2.2: the token request may name only resources the grant was asked for. The refusal
    comes before the code is consumed (RFC 6749 §4.1.2 single use): the client can retry."""
    code = idp.code_for(app_rp, resource=NOTES)
    assert error_of(exchange(idp, app_rp, code, resource=BILLING)) == "invalid_target"
    retried = exchange(idp, app_rp, code)
    assert retried.status_code == 200, retried.text
    assert aud(idp, retried.json()["access_token"]) == [NOTES, ISSUER]


def test_a_grant_that_named_nothing_is_bound_by_the_clients_audiences(
    idp: Harness, app_rp: RP
) -> None:
    """§2.2: with nothing named at /authorize, the token request may pick any audience the
    client is registered for, and no other."""
    code = idp.code_for(app_rp)
    assert error_of(exchange(idp, app_rp, code, resource=OTHER)) == "invalid_target"
    picked = exchange(idp, app_rp, code, resource=BILLING)
    assert picked.status_code == 200, picked.text
    assert aud(idp, picked.json()["access_token"]) == [BILLING, ISSUER]


def test_refresh_narrows_to_one_resource_of_the_grant(idp: Harness, app_rp: RP) -> None:
    """§2.2: with a refresh token, each access token can be for one of the grant's resources;
    the next refresh without `resource` is for the whole grant again."""
    tokens = idp.tokens(app_rp, resource=[NOTES, BILLING], scope="openid offline_access")
    one = refresh(idp, app_rp, tokens["refresh_token"], resource=BILLING)
    assert one.status_code == 200, one.text
    assert aud(idp, one.json()["access_token"]) == [BILLING, ISSUER]
    whole = refresh(idp, app_rp, one.json()["refresh_token"])
    assert aud(idp, whole.json()["access_token"]) == [NOTES, BILLING, ISSUER]


def test_a_refresh_beyond_the_grant_is_refused_and_the_token_still_works(
    idp: Harness, app_rp: RP
) -> None:
    """§2.2 and RFC 9700 §4.14: a refused refresh does not rotate the token away."""
    tokens = idp.tokens(app_rp, resource=NOTES, scope="openid offline_access")
    refused = refresh(idp, app_rp, tokens["refresh_token"], resource=BILLING)
    assert error_of(refused) == "invalid_target"
    again = refresh(idp, app_rp, tokens["refresh_token"])
    assert again.status_code == 200, again.text
    assert aud(idp, again.json()["access_token"]) == [NOTES, ISSUER]


def test_an_audience_taken_from_the_client_ends_at_the_next_refresh(
    idp: Harness, app_rp: RP
) -> None:
    """The client's registration bounds every token: after an admin takes billing away, a
    grant for billing refreshes no more (invalid_target), while the refresh token stays."""
    tokens = idp.tokens(app_rp, resource=BILLING, scope="openid offline_access")
    with idp.runtime.sessions.begin() as db:
        update_client(
            db, app_rp.client_id, {"audiences": [NOTES]}, "cli", policy=idp.runtime.outbound
        )
    assert error_of(refresh(idp, app_rp, tokens["refresh_token"])) == "invalid_target"


def test_client_credentials_picks_among_its_audiences(idp: Harness, service: RP) -> None:
    """§2.2 for client_credentials: no resource, the default; one or several of its own; any
    other is invalid_target."""
    default = idp.client_credentials(service).json()["access_token"]
    assert aud(idp, default) == NOTES
    billing = idp.client_credentials(service, resource=BILLING).json()["access_token"]
    assert aud(idp, billing) == BILLING
    both = token_request(idp, service, grant_type="client_credentials", resource=[BILLING, NOTES])
    assert aud(idp, both.json()["access_token"]) == [BILLING, NOTES]
    assert error_of(idp.client_credentials(service, resource=OTHER)) == "invalid_target"
    assert error_of(idp.client_credentials(service, resource="not a uri")) == "invalid_target"


def test_other_parameters_may_still_not_repeat(idp: Harness, service: RP) -> None:
    """RFC 6749 §3.2: only `resource` may be sent more than once."""
    repeated = token_request(
        idp, service, grant_type="client_credentials", scope=["reports", "reports"]
    )
    assert error_of(repeated) == "invalid_request"


def test_a_token_for_an_api_does_not_open_userinfo(idp: Harness, service: RP) -> None:
    """Userinfo has its own audience, the issuer (OIDC Core §5.3): a token for an API alone is
    refused there with invalid_token (RFC 6750 §3.1)."""
    token = idp.client_credentials(service, resource=BILLING).json()["access_token"]
    refused = userinfo(idp, token)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
