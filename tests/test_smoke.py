"""The whole code flow, once, as a relying party sees it (OIDC Core §3.1)."""

from tests.helpers import Harness


def test_code_flow_end_to_end(idp: Harness) -> None:
    """§3.1.2 → §3.1.3 → §5.3: authorize, sign in, consent, redeem, call userinfo."""
    idp.user(name="Alice")
    rp = idp.client()
    tokens = idp.tokens(rp)
    id_token = idp.decode(tokens["id_token"])
    assert id_token.claims["aud"] == rp.client_id
    assert id_token.claims["nonce"] == rp.nonce
    info = idp.http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 200, info.text
    assert info.json()["email"] == "alice@example.com"
    assert info.json()["name"] == "Alice"
