"""The client form of the admin pages: RFC 7591 §2 metadata from a form and back, and the
registration (a ClientSpec) it describes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from idp.protocol.requests import Params
from idp.store.clients import AUTH_METHODS, GRANT_TYPES, Client

OPTIONAL_URIS = ("jwks_uri", "backchannel_logout_uri")
FLAGS = ("require_pkce", "require_mfa", "can_introspect")
# Lists where empty means "the server's default" (None), one URI per line.
DEFAULTED_URIS = ("audiences", "resources")


@dataclass
class ClientForm:
    """What the form shows: the values by their RFC 7591 names, and the errors by field."""

    values: dict[str, object]
    errors: dict[str, str] = field(default_factory=dict)

    def context(self) -> dict[str, object]:
        return {
            "values": self.values,
            "errors": self.errors,
            "grant_choices": GRANT_TYPES,
            "method_choices": AUTH_METHODS,
        }


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def blank() -> ClientForm:
    return ClientForm(
        {
            "client_name": "",
            "redirect_uris": [],
            "post_logout_redirect_uris": [],
            "grant_types": ["authorization_code"],
            "scope": "openid",
            "token_endpoint_auth_method": "client_secret_basic",
            "jwks": None,
            "jwks_uri": None,
            "backchannel_logout_uri": None,
            "require_pkce": True,
            "require_mfa": False,
            "can_introspect": False,
            "audiences": None,
            "resources": None,
            "roles_visible": None,
        }
    )


def of_client(client: Client) -> ClientForm:
    return ClientForm(
        {
            "client_name": client.name,
            "redirect_uris": list(client.redirect_uris),
            "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
            "grant_types": list(client.grant_types),
            "scope": " ".join(client.scopes),
            "token_endpoint_auth_method": client.auth_method,
            "jwks": client.jwks,
            "jwks_uri": client.jwks_uri,
            "backchannel_logout_uri": client.backchannel_logout_uri,
            "require_pkce": client.require_pkce,
            "require_mfa": client.require_mfa,
            "can_introspect": client.can_introspect,
            "audiences": client.audiences,
            "resources": client.resources,
            "roles_visible": client.roles_visible,
        }
    )


def read(params: Params) -> ClientForm:
    """The metadata the form sent; a jwks that is not a JSON object is a field error."""
    form = ClientForm(
        {
            "client_name": (params.get("client_name") or "").strip(),
            "redirect_uris": _lines(params.get("redirect_uris")),
            "post_logout_redirect_uris": _lines(params.get("post_logout_redirect_uris")),
            "grant_types": list(dict.fromkeys(params.lists.get("grant_types", []))),
            "scope": " ".join((params.get("scope") or "").split()),
            "token_endpoint_auth_method": params.get("token_endpoint_auth_method") or "",
            "jwks": None,
            **{name: (params.get(name) or "").strip() or None for name in OPTIONAL_URIS},
            **{name: params.get(name) == "on" for name in FLAGS},
            **{name: _lines(params.get(name)) or None for name in DEFAULTED_URIS},
            "roles_visible": (params.get("roles_visible") or "").split() or None,
        }
    )
    raw = (params.get("jwks") or "").strip()
    if raw:
        try:
            document = json.loads(raw)
        except ValueError:
            document = None
        if isinstance(document, dict):
            form.values["jwks"] = document
        else:
            form.values["jwks"] = raw
            form.errors["jwks"] = "must be a JSON object (a JWK Set)"
    return form


def changes(form: ClientForm) -> dict[str, object]:
    """The form's values as update_client() takes them (RFC 7591 names)."""
    return dict(form.values)


def jwks_text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, indent=2)
