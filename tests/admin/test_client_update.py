"""Updating a registered client (idp.admin.clients.update_client): RFC 7591 §2 metadata names,
the checks registration makes, field errors that write nothing, and one audit event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from idp.admin.clients import (
    InvalidClient,
    describe,
    fetch_for_update,
    update_client,
)
from idp.store import clients
from idp.store.audit import AuditRecord
from idp.store.clients import Client
from tests.helpers import Harness
from tests.images import png
from tests.slow_host import serve_slow
from tests.token_helpers import client_key, public_jwks

SERVICE = {"grant_types": ["client_credentials"], "scopes": ["api.read"], "redirect_uris": []}


def update(idp: Harness, client_id: str, **changes: Any) -> Client:
    policy = idp.runtime.outbound
    with idp.runtime.sessions.begin() as db:
        current = clients.get(db, client_id)
        assert current is not None
    logo = fetch_for_update(current, changes, policy)  # as callers do: outside the transaction
    with idp.runtime.sessions.begin() as db:
        return update_client(db, client_id, changes, "test-admin", policy=policy, logo=logo)


def row(idp: Harness, client_id: str) -> dict[str, object]:
    with idp.runtime.sessions.begin() as db:
        client = clients.get(db, client_id)
        assert client is not None
        return {**describe(client, logo=None), "secret_hash": client.secret_hash}


def events(idp: Harness) -> list[AuditRecord]:
    with idp.runtime.sessions.begin() as db:
        return list(db.scalars(select(AuditRecord).where(AuditRecord.event == "client.updated")))


# field -> (the change, the key describe() shows it under, the value it shows)
CHANGES: dict[str, tuple[object, str, object]] = {
    "client_name": ("Renamed", None, None),
    "redirect_uris": (["https://rp.example/a", "https://rp.example/b"], None, None),
    "post_logout_redirect_uris": (["https://rp.example/bye"], None, None),
    "grant_types": (["authorization_code"], None, None),
    "scope": ("openid email", None, None),
    "logo_uri": (None, None, None),
    "client_uri": ("https://rp.example/", None, None),
    "policy_uri": ("https://rp.example/privacy", None, None),
    "tos_uri": ("https://rp.example/terms", None, None),
    "require_pkce": (False, None, None),
    "trusted": (True, None, None),
    "require_mfa": (True, None, None),
    "can_introspect": (True, None, None),
    "access_token_ttl": (600, None, None),
    "refresh_token_idle_ttl": (3600, None, None),
    "refresh_token_absolute_ttl": (86400, None, None),
    "id_token_signed_response_alg": ("ES256", None, None),
    "audiences": (["https://api.example", "urn:example:reports"], None, None),
    "backchannel_logout_uri": ("https://rp.example/logout", None, None),
}


@pytest.mark.parametrize("field", list(CHANGES))
def test_each_field_updates(idp: Harness, field: str) -> None:
    """RFC 7591 §2: each metadata field can be changed on its own, and only it changes."""
    # with refresh_token, so that its lifetimes may be set
    rp = idp.client(grant_types=["authorization_code", "refresh_token"])
    before = row(idp, rp.client_id)
    value, shown_as, shown = CHANGES[field]
    update(idp, rp.client_id, **{field: value})
    after = row(idp, rp.client_id)
    key = shown_as or field
    assert after[key] == (value if shown_as is None else shown)
    assert {k: v for k, v in after.items() if k != key} == {
        k: v for k, v in before.items() if k != key
    }


def test_private_key_jwt_with_keys_drops_the_secret(idp: Harness) -> None:
    """RFC 7591 §2 token_endpoint_auth_method private_key_jwt with jwks: the secret it no longer
    uses is removed."""
    rp = idp.client(**SERVICE)
    jwks = public_jwks(client_key())
    update(idp, rp.client_id, token_endpoint_auth_method="private_key_jwt", jwks=jwks)
    after = row(idp, rp.client_id)
    assert (after["token_endpoint_auth_method"], after["jwks"]) == ("private_key_jwt", jwks)
    assert after["secret_hash"] is None


BAD: dict[str, tuple[dict[str, Any], dict[str, object], str]] = {
    "http-redirect": (
        {},
        {"redirect_uris": ["https://rp.example/ok", "http://rp.example/cb"]},
        "redirect_uris[1]",
    ),
    "fragment": (
        {},
        {"post_logout_redirect_uris": ["https://rp.example/#x"]},
        "post_logout_redirect_uris[0]",
    ),
    "grant": ({}, {"grant_types": ["authorization_code", "implicit"]}, "grant_types[1]"),
    "no-redirect": ({}, {"redirect_uris": []}, "redirect_uris"),
    "scope": ({}, {"scope": 'openid "quoted"'}, "scope"),
    "name": ({}, {"client_name": "  "}, "client_name"),
    "ttl": ({}, {"access_token_ttl": 5}, "access_token_ttl"),
    "ttl-type": ({}, {"access_token_ttl": "600"}, "access_token_ttl"),
    "bool-type": ({}, {"trusted": "yes"}, "trusted"),
    "unknown": ({}, {"client_secret": "x"}, "client_secret"),
    "logo-http": ({}, {"logo_uri": "http://rp.example/logo.png"}, "logo_uri"),
    "alg": ({}, {"id_token_signed_response_alg": "none"}, "id_token_signed_response_alg"),
    "pkjwt-no-keys": (
        SERVICE,
        {"token_endpoint_auth_method": "private_key_jwt"},
        "token_endpoint_auth_method",
    ),
    "secret-none": (
        {**SERVICE, "auth_method": "private_key_jwt", "jwks": public_jwks(client_key())},
        {"token_endpoint_auth_method": "client_secret_basic"},
        "token_endpoint_auth_method",
    ),
    "to-public": ({}, {"token_endpoint_auth_method": "none"}, "token_endpoint_auth_method"),
    "public-no-pkce": ({"public": True}, {"require_pkce": False}, "require_pkce"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_value_is_a_field_error_and_writes_nothing(idp: Harness, case: str) -> None:
    """RFC 7591 §3.2.2 invalid_redirect_uri / invalid_client_metadata: an update registration
    would refuse is refused naming the field, and neither the client nor the audit changes."""
    spec, changes, field = BAD[case]
    rp = idp.client(**spec)
    before = row(idp, rp.client_id)
    with pytest.raises(InvalidClient) as raised:
        update(idp, rp.client_id, **changes)
    assert field in raised.value.fields, raised.value.fields
    assert str(raised.value).startswith(f"{field}: ")
    assert row(idp, rp.client_id) == before
    assert events(idp) == []


def test_the_audit_event_holds_before_and_after_and_no_secret(idp: Harness) -> None:
    """One client.updated event per update: the actor, the client, each changed field before
    and after (token_endpoint_auth_method kept, though its name looks secret), never a secret."""
    rp = idp.client(**SERVICE)
    secret_hash = row(idp, rp.client_id)["secret_hash"]
    jwks = public_jwks(client_key())
    update(
        idp, rp.client_id, client_name="New", token_endpoint_auth_method="private_key_jwt",
        jwks=jwks, trusted=False,
    )  # fmt: skip
    (event,) = events(idp)
    assert (event.client_id, event.actor) == (rp.client_id, "test-admin")
    assert "actor" not in event.detail
    assert event.detail["changes"] == {
        "client_name": {"before": "Test RP", "after": "New"},
        "token_endpoint_auth_method": {"before": "client_secret_basic", "after": "private_key_jwt"},
        "jwks": {"before": None, "after": jwks},
    }
    stored = json.dumps(event.detail)
    assert rp.secret and rp.secret not in stored
    assert str(secret_hash) not in stored


def test_a_new_logo_is_fetched_before_and_stored(idp: Harness) -> None:
    """OIDC Registration §2 logo_uri: a changed logo is fetched outside the transaction and
    replaces the stored one; an unreachable one refuses the update."""
    rp = idp.client()
    with serve_slow("ok", body=png(), content_type="image/png") as host:
        update(idp, rp.client_id, logo_uri=host.url + "logo.png")
    with idp.runtime.sessions.begin() as db:
        stored = clients.logo(db, rp.client_id)
        assert stored is not None and stored.image == png()
    (event,) = events(idp)
    assert event.detail["changes"]["logo_sha256"] == {"before": None, "after": stored.sha256}
    update(idp, rp.client_id, logo_uri=None)
    with idp.runtime.sessions.begin() as db:
        assert clients.logo(db, rp.client_id) is None
    with serve_slow("status", status=404) as host, pytest.raises(InvalidClient) as raised:
        update(idp, rp.client_id, logo_uri=host.url)
    assert raised.value.fields == {"logo_uri": "could not fetch the logo (HTTP 404)"}
