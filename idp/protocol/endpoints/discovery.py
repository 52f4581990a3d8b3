"""Provider metadata: OIDC Discovery 1.0 §3 and RFC 8414 §2, built once per process."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from idp.protocol.claims import STANDARD_SCOPES, supported_claims
from idp.protocol.client_auth import ASSERTION_ALGS
from idp.settings import UI_LOCALES, Settings
from idp.store.clients import AUTH_METHODS

router = APIRouter()


def metadata(settings: Settings) -> dict[str, Any]:
    e = settings.endpoint
    return {
        "issuer": settings.issuer,
        "authorization_endpoint": e("/authorize"),
        "token_endpoint": e("/token"),
        "userinfo_endpoint": e("/userinfo"),
        "jwks_uri": e("/jwks.json"),
        "scopes_supported": list(STANDARD_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "end_session_endpoint": e("/logout"),
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "revocation_endpoint": e("/revoke"),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint": e("/introspect"),
        "introspection_endpoint_auth_methods_supported": [m for m in AUTH_METHODS if m != "none"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": settings.enabled_algs,
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": supported_claims(),
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "acr_values_supported": ["aal1", "aal2", "phr"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
        # OIDC Discovery §3: the languages of the pages, for ui_locales (OIDC Core §3.1.2.1).
        "ui_locales_supported": list(UI_LOCALES),
    }


def encoded(settings: Settings) -> bytes:
    return json.dumps(metadata(settings), separators=(",", ":")).encode()


def _document(request: Request) -> Response:
    # A GET or HEAD is answered before routing (documents.Documents), with an ETag.
    return request.app.state.published.response(request)  # type: ignore[no-any-return]


@router.get("/.well-known/openid-configuration", include_in_schema=False)
async def openid_configuration(request: Request) -> Response:
    return _document(request)


@router.get("/.well-known/oauth-authorization-server", include_in_schema=False)
async def oauth_authorization_server(request: Request) -> Response:
    return _document(request)
