"""The OpenID Connect part of the code grant: the ID token (OIDC Core §3.1.3.3)."""

from __future__ import annotations

from typing import Any

from authlib.oidc.core.grants import OpenIDCode as AuthlibOpenIDCode


class OpenIDCode(AuthlibOpenIDCode):  # type: ignore[misc]
    """Adds an ID token to a code-grant token response when the code carried `openid`.

    authlib's prompt handling is not registered: /authorize decides login and consent itself.
    """

    def __init__(self) -> None:
        super().__init__(require_nonce=False)

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.process_token)

    def process_token(self, grant: Any, response: Any) -> Any:
        _, token, _ = response
        request = grant.request
        code = request.authorization_code
        if "openid" not in code.scope.split():
            return token
        client_id = request.client.client_id
        claims = {
            "sub": request.user.id,
            "aud": client_id,
            "azp": client_id,
            "auth_time": code.auth_time,
            "nonce": code.nonce,
            "sid": code.sid,
            "amr": code.amr,
            "acr": code.acr,
        }
        token["id_token"] = grant.server.id_token(request.client, claims, token["access_token"])
        return token
