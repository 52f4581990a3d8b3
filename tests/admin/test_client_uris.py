"""The URLs this server will call, checked at registration (issue 11, increment 4): a jwks_uri
or backchannel_logout_uri is https outside development, is not an IP address the outbound
address policy refuses, and its name does not resolve to one; each refusal names the field.
register() checks without I/O (no name lookups inside the transaction); fetch_logo(), the step
before it, resolves the names. `idp clients create` does both.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from idp.admin.clients import ClientSpec, InvalidRegistration, fetch_logo, register
from idp.outbound import OutboundPolicy
from idp.settings import parse_networks
from tests.admin.test_clients import sessions as sessions
from tests.cli.test_main import Cli, cli as cli
from tests.conftest import TEST_KEK
from tests.token_helpers import client_key, public_jwks

PRODUCTION = OutboundPolicy()  # IDP_OUTBOUND_ALLOWED_NETWORKS unset
LOOPBACK = OutboundPolicy(allowed=parse_networks("127.0.0.0/8,::1/128"))
DEV = OutboundPolicy(development=True)
FIELDS = ["jwks_uri", "backchannel_logout_uri"]


def spec(**uris: str) -> ClientSpec:
    auth = {"auth_method": "private_key_jwt"} if "jwks_uri" in uris else {}
    return ClientSpec(
        name="RP",
        grant_types=["client_credentials"],
        scopes=["api"],
        **auth,  # type: ignore[arg-type]
        **uris,  # type: ignore[arg-type]
    )


def refusal(make: Any) -> str:
    with pytest.raises(InvalidRegistration) as raised:
        make()
    message = str(raised.value)
    assert "\n" not in message
    return message


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Host names that resolve to the given addresses, without DNS; others do not resolve."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [a for ip in table[host] for a in real(ip, port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield table


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::1]",
        "10.0.0.5",
        "192.168.1.20",
        "100.64.3.4",
        "[fd12::1]",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::a00:5]",
        "169.254.169.254",
        "[fe80::1]",
        "0.0.0.0",  # noqa: S104 (an address refused, not bound)
    ],
)
def test_a_refused_address_is_refused_at_registration_without_io(
    sessions: sessionmaker[Session], field: str, host: str
) -> None:
    """Issue 11: outside development, a URL whose host is a loopback, private, CGNAT, ULA,
    link-local or unspecified address (or an IPv4-mapped or NAT64 form of one) is refused by
    register() itself, naming the field; nothing is written."""
    uri = f"https://{host}/path"
    with sessions.begin() as db:
        message = refusal(lambda: register(db, spec(**{field: uri}), policy=PRODUCTION))
    assert message.startswith(f"{field}: {uri!r}: this server does not connect to that address")


@pytest.mark.parametrize("field", FIELDS)
def test_a_loopback_target_is_refused_in_production_and_allowed_when_listed(
    sessions: sessionmaker[Session], field: str
) -> None:
    """Issue 11: IDP_OUTBOUND_ALLOWED_NETWORKS is what lets an operator register an
    on-premises relying party (the suite allows loopback); without it, refused."""
    uri = "https://127.0.0.1:8443/x"
    refusal(lambda: fetch_logo(spec(**{field: uri}), PRODUCTION))
    fetch_logo(spec(**{field: uri}), LOOPBACK)
    with sessions.begin() as db:
        register(db, spec(**{field: uri}), policy=LOOPBACK)


@pytest.mark.parametrize("field", FIELDS)
def test_link_local_is_refused_whatever_networks_are_allowed(field: str) -> None:
    """Issue 11: link-local and metadata addresses are refused whatever the setting."""
    everything = OutboundPolicy(allowed=parse_networks("0.0.0.0/0,::/0"))
    for host in ["169.254.169.254", "[fd00:ec2::254]", "100.100.100.200", "[fe80::1]"]:
        refusal(lambda: fetch_logo(spec(**{field: f"https://{host}/"}), everything))  # noqa: B023


@pytest.mark.parametrize("field", FIELDS)
def test_plain_http_is_refused_outside_development(field: str) -> None:
    """Issue 11: http:// is refused outside development, naming the field, except to an IP
    address the operator allowed; a development server keeps http on loopback names."""
    for uri in ["http://rp.example/x", "http://localhost:8000/x", "http://127.0.0.1:8000/x"]:
        message = refusal(lambda: fetch_logo(spec(**{field: uri}), PRODUCTION))  # noqa: B023
        assert message.startswith(f"{field}: {uri!r} must be https"), message
    refusal(lambda: fetch_logo(spec(**{field: "http://localhost:8000/x"}), LOOPBACK))
    fetch_logo(spec(**{field: "http://127.0.0.1:8000/x"}), LOOPBACK)
    fetch_logo(spec(**{field: "http://localhost:8000/x"}), DEV)


@pytest.mark.parametrize("field", FIELDS)
def test_a_name_that_resolves_to_a_refused_address_is_refused(
    names: dict[str, list[str]], field: str
) -> None:
    """Issue 11: a name resolving to refused addresses (only, or among public ones: every
    connection would be refused) is refused by fetch_logo, before any transaction; a public
    one is accepted, and so is a name that does not resolve yet (it is checked at each
    connection)."""
    names.update(
        {
            "internal.example": ["10.0.0.7"],
            "mixed.example": ["93.184.215.14", "127.0.0.1"],
            "public.example": ["93.184.215.14"],
        }
    )
    for name in ["internal.example", "mixed.example"]:
        uri = f"https://{name}/x"
        message = refusal(lambda: fetch_logo(spec(**{field: uri}), PRODUCTION))  # noqa: B023
        assert message.startswith(f"{field}: {uri!r}: this server does not connect"), message
    fetch_logo(spec(**{field: "https://public.example/x"}), PRODUCTION)
    fetch_logo(spec(**{field: "https://not-yet.example/x"}), PRODUCTION)


def test_the_cli_refuses_a_loopback_jwks_uri_in_production(cli: Cli, tmp_path: Path) -> None:
    """Issue 11: `idp clients create` on a production issuer without
    IDP_OUTBOUND_ALLOWED_NETWORKS refuses a loopback jwks_uri in one line naming the field, and
    with the setting accepts it."""
    jwks = tmp_path / "client.jwks"
    jwks.write_text(json.dumps(public_jwks(client_key())))
    args = [
        "clients", "create", "--name", "Service", "--grant-type", "client_credentials",
        "--scope", "api", "--auth-method", "private_key_jwt",
        "--jwks-uri", "https://127.0.0.1:8443/jwks.json",
    ]  # fmt: skip
    # A production issuer has no generated KEK: the operator's (the audit row is sealed with it).
    cli.env.update(IDP_ISSUER="https://id.example.com", IDP_KEY_ENCRYPTION_KEY=TEST_KEK)
    refused = cli.run(*args)
    assert refused.returncode != 0
    (line,) = refused.stderr.strip().splitlines()
    assert "jwks_uri: 'https://127.0.0.1:8443/jwks.json': this server does not connect" in line
    cli.env.update(IDP_OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8")
    accepted = cli.run(*args, "--json")
    assert accepted.returncode == 0, accepted.stderr
