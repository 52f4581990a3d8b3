"""Client registration metadata (OpenID Connect Dynamic Client Registration 1.0 §2: logo_uri,
client_uri, policy_uri, tos_uri) in idp.admin.clients: checked without I/O, the logo fetched
before any transaction, and nothing written when either step refuses."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from idp.admin.clients import (
    ClientSpec,
    InvalidRegistration,
    Logo,
    describe_all,
    fetch_logo,
    register,
    remove,
)
from idp.audit.chain import write_sessions
from idp.db.engine import make_engine
from idp.outbound import OutboundPolicy
from idp.settings import Settings, parse_networks
from idp.store import clients
from idp.store.audit import AuditRecord
from idp.store.clients import Client, ClientLogo
from tests.conftest import migrate
from tests.images import JPEG, SVG, png
from tests.slow_host import SlowHost, serve_slow

# The suite's policy (tests.conftest.make_settings): production, loopback hosts allowed.
POLICY = OutboundPolicy(allowed=parse_networks("127.0.0.0/8,::1/128"))
URIS = {
    "client_uri": "https://rp.example/",
    "policy_uri": "https://rp.example/privacy",
    "tos_uri": "https://rp.example/terms?lang=en",
}


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    migrate(settings)
    engine = make_engine(settings)
    yield write_sessions(engine, settings)
    engine.dispose()


@pytest.fixture
def logo_host() -> Iterator[SlowHost]:
    with serve_slow("ok", body=png(), content_type="image/png") as host:
        yield host


def spec(**metadata: str) -> ClientSpec:
    return ClientSpec(
        name="Photos",
        grant_types=["client_credentials"],
        scopes=["api"],
        **metadata,  # type: ignore[arg-type]
    )


def rows(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with sessions.begin() as db:
        return (
            db.scalar(select(func.count()).select_from(Client)) or 0,
            db.scalar(select(func.count()).select_from(ClientLogo)) or 0,
            db.scalar(select(func.count()).select_from(AuditRecord)) or 0,
        )


def registered(sessions: sessionmaker[Session], wanted: ClientSpec) -> str:
    """The client_id of a registration made the way every caller makes it."""
    logo = fetch_logo(wanted, POLICY)
    with sessions.begin() as db:
        return register(db, wanted, logo, policy=POLICY).client.client_id


# What is accepted, and what is stored


def test_the_four_uris_are_stored_as_registered(
    sessions: sessionmaker[Session], logo_host: SlowHost
) -> None:
    """§2: logo_uri, client_uri, policy_uri and tos_uri come back exactly as registered."""
    client_id = registered(sessions, spec(logo_uri=logo_host.url + "logo.png", **URIS))
    with sessions.begin() as db:
        client = clients.get(db, client_id)
        assert client is not None
        (shown,) = describe_all(db, [client])
    assert {k: shown[k] for k in (*URIS, "logo_uri")} == {
        **URIS,
        "logo_uri": logo_host.url + "logo.png",
    }


def test_a_good_logo_is_stored_with_its_digest(
    sessions: sessionmaker[Session], logo_host: SlowHost
) -> None:
    """§2 logo_uri: the image is fetched once, at registration, and stored with its type and
    SHA-256; the client row carries the digest, the listing its facts but never its bytes."""
    client_id = registered(sessions, spec(logo_uri=logo_host.url))
    digest = hashlib.sha256(png()).hexdigest()
    with sessions.begin() as db:
        client = clients.get(db, client_id)
        logo = clients.logo(db, client_id)
        assert client is not None and logo is not None
        assert (logo.content_type, logo.image, logo.sha256) == ("image/png", png(), digest)
        assert client.logo_sha256 == digest
        (shown,) = describe_all(db, [client])
        event = db.scalars(select(AuditRecord).where(AuditRecord.client_id == client_id)).one()
    assert shown["logo"] == {"content_type": "image/png", "sha256": digest, "bytes": len(png())}
    assert event.detail["logo_sha256"] == digest
    assert logo_host.count == 1


def test_without_a_logo_uri_there_is_no_logo(sessions: sessionmaker[Session]) -> None:
    """No logo_uri: nothing fetched, no logo row, `logo` null in the listing."""
    client_id = registered(sessions, spec(**URIS))
    with sessions.begin() as db:
        client = clients.get(db, client_id)
        assert client is not None and client.logo_sha256 is None
        assert clients.logo(db, client_id) is None
        assert describe_all(db, [client])[0]["logo"] is None


def test_a_listing_reports_each_clients_own_logo(
    sessions: sessionmaker[Session], logo_host: SlowHost
) -> None:
    """One query finds the logos of a whole listing, each under its own client."""
    plain = registered(sessions, spec())
    logo_host.body = JPEG
    jpeg = registered(sessions, spec(logo_uri=logo_host.url))
    logo_host.body = png()
    png_one = registered(sessions, spec(logo_uri=logo_host.url))
    with sessions.begin() as db:
        listing = describe_all(db, clients.all_clients(db))
    logos = {entry["client_id"]: entry["logo"] for entry in listing}
    assert logos == {
        plain: None,
        jpeg: {"content_type": "image/jpeg", "sha256": _sha256(JPEG), "bytes": len(JPEG)},
        png_one: {"content_type": "image/png", "sha256": _sha256(png()), "bytes": len(png())},
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_token_endpoints_read_carries_the_digest_but_never_the_image(
    sessions: sessionmaker[Session], logo_host: SlowHost
) -> None:
    """The raw client read of /token stays one small row: the image lives in client_logos."""
    client_id = registered(sessions, spec(logo_uri=logo_host.url))
    with sessions.begin() as db:
        record = clients.get_record(db, client_id)
    assert record is not None
    assert record.logo_sha256 == hashlib.sha256(png()).hexdigest()
    assert record.logo_uri == logo_host.url
    assert not any(isinstance(value, bytes) for value in vars(record).values())


def test_removing_the_client_removes_its_logo(
    sessions: sessionmaker[Session], logo_host: SlowHost
) -> None:
    """The logo is the client's: ON DELETE CASCADE takes it with the client."""
    client_id = registered(sessions, spec(logo_uri=logo_host.url))
    with sessions.begin() as db:
        assert remove(db, client_id)
    with sessions.begin() as db:
        assert clients.logo(db, client_id) is None
    assert rows(sessions)[:2] == (0, 0)


# What is refused, before any I/O


@pytest.mark.parametrize("field", ["logo_uri", "client_uri", "policy_uri", "tos_uri"])
@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=",
        "ftp://rp.example/logo.png",
        "http://rp.example/logo.png",
        "//rp.example/logo.png",
        "https:///logo.png",
        "",
    ],
)
def test_a_uri_that_is_not_https_is_refused_with_its_name(field: str, uri: str) -> None:
    """§2: these are URLs a person may open from the consent page: https only (or http on a
    loopback host), refused in one line that names the field."""
    with pytest.raises(InvalidRegistration) as raised:
        fetch_logo(spec(**{field: uri}), POLICY)
    assert str(raised.value) == f"{field}: {uri!r} must be https (or http on a loopback host)"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("https://user:pw@rp.example/", "must not carry a user name or password"),
        ("https://rp.example@evil.example/", "must not carry a user name or password"),
        ("https://rp.example/terms#top", "must not have a fragment"),
        ("https://rp.example/a b", "contains whitespace or a control character"),
        ("https://rp.example/\x00", "contains whitespace or a control character"),
        ("https://rp.example/\u202epng.exe", "contains whitespace or a control character"),
        ("https://rp.example:99999/", "is not a valid URL"),
        ("https://[::1/", "is not a valid URL"),
    ],
    ids=["password", "user", "fragment", "space", "nul", "bidi-override", "port", "bracket"],
)
def test_userinfo_fragments_and_invisible_characters_are_refused(uri: str, reason: str) -> None:
    """§2 and RFC 3986 §3.2.1: no credentials in a URL, nothing after '#', nothing that does
    not show (a person reads these URLs on the consent page)."""
    with pytest.raises(InvalidRegistration) as raised:
        fetch_logo(spec(tos_uri=uri), POLICY)
    message = str(raised.value)
    assert message.startswith("tos_uri: ") and message.endswith(reason)
    assert "\n" not in message


def test_an_overlong_uri_is_refused() -> None:
    """Each URI fits its column: 2,000 characters at most."""
    fits = "https://rp.example/" + "p" * (2000 - len("https://rp.example/"))
    fetch_logo(spec(policy_uri=fits), POLICY)
    with pytest.raises(InvalidRegistration, match="policy_uri: is longer than 2000 characters"):
        fetch_logo(spec(policy_uri=fits + "p"), POLICY)


def test_loopback_http_is_accepted_for_development() -> None:
    """As for jwks_uri: http on a loopback host is accepted, https anywhere."""
    fetch_logo(spec(client_uri="http://localhost:8002/", policy_uri="http://[::1]/privacy"), POLICY)


def test_an_invalid_registration_does_not_fetch_its_logo(logo_host: SlowHost) -> None:
    """Validation comes first and does no I/O: a registration refused for another reason
    never makes a request to its logo_uri."""
    bad = spec(logo_uri=logo_host.url)
    bad.scopes = ["not a scope"]
    with pytest.raises(InvalidRegistration, match="scope"):
        fetch_logo(bad, POLICY)
    assert logo_host.connections == 0


# A logo that cannot be had


def test_a_logo_that_times_out_refuses_the_registration() -> None:
    """A logo_uri whose host does not answer refuses the registration with a one-line reason,
    within the deadline."""
    with serve_slow("hang") as host, pytest.raises(InvalidRegistration) as raised:
        fetch_logo(spec(logo_uri=host.url), POLICY, deadline=0.3)
    assert str(raised.value) == "logo_uri: could not fetch the logo (timed out)"


@pytest.mark.parametrize(
    ("behaviour", "settings", "reason"),
    [
        ("status", {"status": 404}, "HTTP 404"),
        ("ok", {"body": SVG, "content_type": "image/svg+xml"}, "not a PNG, JPEG or WebP image"),
        ("ok", {"body": png(300 * 1024)}, "too large"),
    ],
    ids=["404", "svg", "too-large"],
)
def test_a_logo_that_cannot_be_fetched_refuses_the_registration(
    behaviour: str, settings: dict[str, object], reason: str
) -> None:
    """The operator learns why, in one line, and can fix the logo or leave logo_uri out."""
    with serve_slow(behaviour, **settings) as host, pytest.raises(InvalidRegistration) as raised:
        fetch_logo(spec(logo_uri=host.url), POLICY)
    assert str(raised.value) == f"logo_uri: could not fetch the logo ({reason})"


def test_register_takes_only_the_logo_of_its_own_spec(
    sessions: sessionmaker[Session], logo_host: SlowHost
) -> None:
    """A client with a logo_uri always has its logo, so pages never link to a missing one:
    register() refuses a spec with a logo_uri but no logo, or another spec's logo."""
    before = rows(sessions)
    with_logo = spec(logo_uri=logo_host.url)
    logo = fetch_logo(with_logo, POLICY)
    assert isinstance(logo, Logo)
    with sessions.begin() as db, pytest.raises(ValueError, match="fetch_logo"):
        register(db, with_logo, policy=POLICY)
    with sessions.begin() as db, pytest.raises(ValueError, match="fetch_logo"):
        register(db, spec(), logo, policy=POLICY)
    assert rows(sessions) == before
