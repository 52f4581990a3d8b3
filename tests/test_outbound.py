"""idp.outbound, the one HTTP client for requests to other hosts, against misbehaving hosts on
127.0.0.1 (tests.slow_host). Deadlines are 1 s here, and drips faster than that, so a client
whose timeout restarts with every byte would never give up."""

from __future__ import annotations

import gzip
import ipaddress
import socket
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from idp import outbound
from idp.outbound import OutboundError, OutboundPolicy, fetch_json, post_form, post_json
from idp.settings import Settings, parse_networks
from tests.slow_host import serve_slow

# The suite's policy (tests.conftest.make_settings): production, the loopback test hosts allowed.
LOOPBACK = OutboundPolicy(allowed=parse_networks("127.0.0.0/8,::1/128"))
DEV = OutboundPolicy(development=True)  # a plain-http localhost issuer: http to names too
PRODUCTION = OutboundPolicy()  # IDP_OUTBOUND_ALLOWED_NETWORKS unset

DEADLINE = 1.0
SLACK = 1.5  # what a loaded machine may add to a deadline
DRIP = 0.2  # seconds per byte: well inside any per-read timeout


def timed(call: Callable[[], object], message: str) -> float:
    """Run call, which must raise OutboundError(message); the seconds it took."""
    started = time.monotonic()
    with pytest.raises(OutboundError) as raised:
        call()
    assert str(raised.value) == message
    return time.monotonic() - started


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Host names that resolve to the given addresses, without DNS."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [a for ip in table.get(host, [host]) for a in real(ip, port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield table


# The deadline


def test_a_dripping_body_is_cut_off_at_the_deadline() -> None:
    """A host that sends its headers, then a byte of body now and then, is cut off on time."""
    with serve_slow("drip", interval=DRIP) as host:
        elapsed = timed(lambda: fetch_json(host.url, LOOPBACK, deadline=DEADLINE), "timed out")
    assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK
    assert host.sent >= 2  # it was dripping, not silent


def test_a_dripping_status_line_is_cut_off_at_the_deadline() -> None:
    """A host that drips its status line and headers a byte at a time is cut off on time."""
    with serve_slow("drip_headers", interval=DRIP) as host:
        elapsed = timed(lambda: fetch_json(host.url, LOOPBACK, deadline=DEADLINE), "timed out")
    assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK
    assert host.sent >= 2


def test_a_dripping_tls_handshake_is_cut_off_at_the_deadline() -> None:
    """An https host that drips its handshake a byte at a time is cut off on time."""
    with serve_slow("drip_tls", interval=DRIP) as host:
        url = f"https://127.0.0.1:{host.port}/"
        elapsed = timed(lambda: fetch_json(url, LOOPBACK, deadline=DEADLINE), "timed out")
    assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK
    assert host.sent >= 2


def test_a_host_that_never_answers_is_cut_off_at_the_deadline() -> None:
    """A host that reads the request and never answers is cut off on time, GET and POST."""
    with serve_slow("hang") as host:
        elapsed = timed(lambda: fetch_json(host.url, LOOPBACK, deadline=DEADLINE), "timed out")
        assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK
        form = {"logout_token": "x"}
        elapsed = timed(lambda: post_form(host.url, form, LOOPBACK, deadline=DEADLINE), "timed out")
        assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK
    assert [seen.method for seen in host.requests] == ["GET", "POST"]


def test_a_drip_that_httpx_waits_out_does_not_outlive_the_deadline() -> None:
    """Why this module exists: httpx's timeout restarts with each byte; our deadline does not."""
    body = b'{"keys": []}'  # 12 bytes, 0.1 s apart: 1.2 s in all, no gap of 0.5 s
    with serve_slow("drip", body=body, interval=0.1) as host:
        started = time.monotonic()
        with httpx.Client(timeout=0.5, trust_env=False) as client:
            assert client.get(host.url).content == body
        assert time.monotonic() - started > 1.0
        elapsed = timed(lambda: fetch_json(host.url, LOOPBACK, deadline=0.5), "timed out")
    assert elapsed < 0.5 + SLACK


def test_a_slow_name_lookup_is_cut_off_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name lookup that does not finish counts against the deadline too."""

    def getaddrinfo(*_args: Any, **_kwargs: Any) -> list[Any]:
        time.sleep(1.0)  # a resolver that does not answer (the lookup thread is abandoned)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    elapsed = timed(lambda: fetch_json("http://rp.example/", DEV, deadline=0.3), "timed out")
    assert elapsed < 0.3 + 0.3


# The size cap


def test_a_body_over_the_cap_is_refused_on_its_content_length() -> None:
    """A Content-Length over the cap is refused before any of the body is read."""
    body = b" " * (outbound.JWKS_MAX_BYTES + 1)
    with serve_slow("drip", body=body, interval=DRIP) as host:
        elapsed = timed(lambda: fetch_json(host.url, LOOPBACK), "too large")
    assert elapsed < 0.5  # it did not wait for the dripping body


def test_a_body_over_the_cap_is_refused_while_streaming_and_reading_stops() -> None:
    """A body with no Content-Length is read only up to the cap: the host cannot flood us."""
    size = 256 * 1024 * 1024
    with serve_slow("big", size=size, content_length=False) as host:
        timed(lambda: fetch_json(host.url, LOOPBACK, max_bytes=64 * 1024), "too large")
    assert host.sent < size // 8  # what the socket buffers took before the client hung up


def test_a_body_of_exactly_the_cap_is_accepted() -> None:
    """The cap is inclusive: a document of max_bytes is read."""
    document = {"keys": [], "pad": ""}
    document["pad"] = "x" * (1000 - len(b'{"keys": [], "pad": ""}'))
    with serve_slow("ok", document=document) as host:
        assert fetch_json(host.url, LOOPBACK, max_bytes=1000) == document
        timed(lambda: fetch_json(host.url, LOOPBACK, max_bytes=999), "too large")


# What is not followed, and what is not a JSON object


def test_a_redirect_is_not_followed() -> None:
    """A 302 is an error for fetch_json and a status for post_form; its target is never asked."""
    with (
        serve_slow("ok", document={"keys": []}) as target,
        serve_slow("redirect", location=target.url) as host,
    ):
        timed(lambda: fetch_json(host.url, LOOPBACK), "HTTP 302")
        assert post_form(host.url, {"logout_token": "x"}, LOOPBACK).status == 302
    assert target.connections == 0


@pytest.mark.parametrize("status", [201, 204, 404, 500])
def test_fetch_json_refuses_any_status_but_200(status: int) -> None:
    """Only a 200 carries a document."""
    with serve_slow("status", status=status, body=b"{}") as host:
        timed(lambda: fetch_json(host.url, LOOPBACK), f"HTTP {status}")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>keys</html>", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"", "not JSON"),
        (b"[" * 60000, "not JSON"),  # nested too deep for the parser
        (b'[{"kty": "EC"}]', "not a JSON object"),
        (b'"keys"', "not a JSON object"),
    ],
)
def test_fetch_json_refuses_a_body_that_is_not_a_json_object(body: bytes, message: str) -> None:
    """A 200 whose body is not a JSON object is an error, not a document."""
    with serve_slow("ok", body=body) as host:
        timed(lambda: fetch_json(host.url, LOOPBACK), message)


def test_fetch_json_asks_for_json_and_returns_the_document() -> None:
    """fetch_json GETs with Accept: application/json and returns the object."""
    with serve_slow("ok", document={"keys": [{"kid": "a"}]}) as host:
        assert fetch_json(host.url + "jwks.json", LOOPBACK) == {"keys": [{"kid": "a"}]}
    (seen,) = host.requests
    assert (seen.method, seen.path) == ("GET", "/jwks.json")
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["host"] == f"127.0.0.1:{host.port}"


# post_form


@pytest.mark.parametrize("status", [200, 204, 400, 500])
def test_post_form_sends_a_urlencoded_form_and_returns_the_status(status: int) -> None:
    """post_form sends application/x-www-form-urlencoded and hands back any status."""
    with serve_slow("status", status=status, body=b"") as host:
        response = post_form(host.url + "logout", {"logout_token": "a b&c=d"}, LOOPBACK)
    assert response.status == status
    (seen,) = host.requests
    assert (seen.method, seen.path) == ("POST", "/logout")
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen.body == b"logout_token=a+b%26c%3Dd"


# post_json


@pytest.mark.parametrize("status", [200, 202, 302, 500])
def test_post_json_sends_the_bytes_and_headers_given_and_returns_the_status(status: int) -> None:
    """post_json sends application/json, the body byte for byte (a signature covers them) and
    the extra headers; any status comes back, a redirect too (never followed)."""
    body = b'{"id":1,"event":"refresh.reused","details":{"note":"\\u00e9"}}'
    with serve_slow("status", status=status, body=b"") as host:
        response = post_json(
            host.url + "hook", body, LOOPBACK, headers=[("X-IdP-Signature", "t=1")]
        )
    assert response.status == status
    (seen,) = host.requests
    assert (seen.method, seen.path, seen.body) == ("POST", "/hook", body)
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-idp-signature"] == "t=1"


def test_post_json_to_a_hung_host_ends_at_the_deadline() -> None:
    """A receiver that never answers costs one deadline, as every outbound call does."""
    with serve_slow("hang") as host:
        elapsed = timed(
            lambda: post_json(host.url, b"{}", LOOPBACK, deadline=DEADLINE), "timed out"
        )
    assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK


def test_post_json_is_refused_a_loopback_address_in_production() -> None:
    """The address policy applies: loopback is refused unless allowed, without connecting."""
    with serve_slow("status") as host:
        timed(lambda: post_json(host.url, b"{}", PRODUCTION), "refused address")
    assert host.connections == 0


def test_a_closed_port_is_a_connection_failure() -> None:
    """Nothing listening is "connection failed", at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    elapsed = timed(lambda: fetch_json(f"http://127.0.0.1:{port}/", LOOPBACK), "connection failed")
    assert elapsed < 0.5


# URLs and addresses


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1:{port}/jwks.json",
        "file:///etc/passwd",
        "http://user:pass@127.0.0.1:{port}/",
        "http://user@127.0.0.1:{port}/",
        "http://127.0.0.1:{port}\\@169.254.169.254/",
        "http:///jwks.json",
        "http://127.0.0.1:99999/",
        "http://[::1/",
        "127.0.0.1:{port}/jwks.json",
    ],
)
def test_urls_other_than_plain_http_and_https_are_refused_without_connecting(url: str) -> None:
    """Other schemes, userinfo, and URLs without a usable host are refused before connecting."""
    with serve_slow("ok") as host:
        timed(lambda: fetch_json(url.format(port=host.port), LOOPBACK), "refused URL")
        timed(lambda: post_form(url.format(port=host.port), {}, LOOPBACK), "refused URL")
    assert host.connections == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.0.1:8080/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
    ],
)
def test_a_link_local_or_metadata_address_is_refused_without_connecting(url: str) -> None:
    """Cloud metadata addresses are refused at once; nothing is sent to them."""
    assert timed(lambda: fetch_json(url, LOOPBACK), "refused address") < 0.5


def test_a_name_is_refused_if_any_of_its_addresses_is_link_local(
    names: dict[str, list[str]],
) -> None:
    """One link-local address among a name's addresses refuses the name, even on loopback."""
    with serve_slow("ok") as host:
        names["rp.example"] = ["127.0.0.1", "169.254.169.254"]
        timed(lambda: fetch_json(f"http://rp.example:{host.port}/", DEV), "refused address")
    assert host.connections == 0


@pytest.mark.parametrize(
    ("name", "ascii_name"),
    [("rp.example", "rp.example"), ("bücher.example", "xn--bcher-kva.example")],
)
def test_a_name_is_connected_to_at_the_address_checked_with_its_own_host_header(
    names: dict[str, list[str]], name: str, ascii_name: str
) -> None:
    """The connection goes to the address the policy saw, and the Host header names the URL's."""
    with serve_slow("ok", document={"keys": []}) as host:
        names[ascii_name] = ["127.0.0.1"]
        assert fetch_json(f"http://{name}:{host.port}/", DEV) == {"keys": []}
    assert host.requests[0].headers["host"] == f"{ascii_name}:{host.port}"


def test_a_name_whose_first_address_refuses_is_reached_at_the_next(
    names: dict[str, list[str]],
) -> None:
    """Like socket.create_connection, each approved address is tried in turn."""
    with serve_slow("ok", document={"keys": []}) as host:
        names["rp.example"] = ["127.0.0.2", "127.0.0.1"]  # nothing listens on 127.0.0.2
        assert fetch_json(f"http://rp.example:{host.port}/", DEV) == {"keys": []}
    assert host.connections == 1


# The address policy (issue 11: outbound requests reach only what they should)

PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"]
LOCAL = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.10",
    "100.64.0.1",
    "100.127.255.254",
    "fc00::1",
    "fd12:3456::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b::a00:1",
    "2002:c0a8:0101::1",
]
ALWAYS = [
    "169.254.169.254",
    "169.254.0.1",
    "fe80::1",
    "fe80::1%1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1",
    "fd00:ec2::254",
    "100.100.100.200",
    "0.0.0.0",  # noqa: S104 (an address refused, not bound)
    "0.1.2.3",
    "::",
]
SPECIAL = [
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",
    "192.0.0.8",
    "ff02::1",
    "ff05::2",
    "2001:db8::1",
    "2001::1",
    "fec0::1",
    "100::1",
    "64:ff9b:1::1",
    "::ffff:224.0.0.1",
]


def addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_reached_in_every_mode(address: str) -> None:
    """A relying party on the internet is reachable, whatever the mode."""
    assert not PRODUCTION.refused(addr(address))
    assert not DEV.refused(addr(address))


@pytest.mark.parametrize("address", LOCAL)
def test_loopback_private_cgnat_and_ula_are_refused_outside_development(address: str) -> None:
    """Issue 11: outside development, loopback, RFC 1918, CGNAT (100.64.0.0/10), ULA
    (fc00::/7) and their IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4 forms are refused: a
    registered URL must not reach into this server's own network (SSRF)."""
    assert PRODUCTION.refused(addr(address))


@pytest.mark.parametrize("address", LOCAL)
def test_development_reaches_loopback_and_private_networks(address: str) -> None:
    """Issue 11: a plain-http localhost issuer (development) keeps local relying parties."""
    assert not DEV.refused(addr(address))


@pytest.mark.parametrize("address", ALWAYS + SPECIAL)
def test_link_local_metadata_multicast_and_reserved_are_refused_in_every_mode(
    address: str,
) -> None:
    """Issue 11: link-local, metadata, unspecified, multicast, documentation and reserved
    addresses, in any embedded form, are never a relying party; development refuses them too."""
    assert PRODUCTION.refused(addr(address))
    assert DEV.refused(addr(address))
    assert LOOPBACK.refused(addr(address))


def test_allowed_networks_open_only_themselves() -> None:
    """IDP_OUTBOUND_ALLOWED_NETWORKS lets an operator reach on-premises relying parties: the
    networks named, in any embedded form, and nothing next to them."""
    policy = OutboundPolicy(allowed=parse_networks("10.1.0.0/16, fd12:3456::/32"))
    for allowed in ["10.1.2.3", "::ffff:10.1.2.3", "64:ff9b::a01:203", "fd12:3456::9"]:
        assert not policy.refused(addr(allowed)), allowed
    for refused in ["10.2.0.1", "127.0.0.1", "192.168.1.1", "fd12:3457::1"]:
        assert policy.refused(addr(refused)), refused


@pytest.mark.parametrize("networks", ["0.0.0.0/0", "169.254.0.0/16,::/0", "fe80::/10"])
def test_link_local_and_metadata_stay_refused_whatever_is_allowed(networks: str) -> None:
    """Issue 11: link-local and metadata addresses are refused whatever the setting says."""
    policy = OutboundPolicy(allowed=parse_networks(networks))
    for address in ["169.254.169.254", "fe80::1", "fd00:ec2::254", "100.100.100.200"]:
        assert policy.refused(addr(address)), address


def test_a_loopback_target_is_refused_in_production_without_connecting() -> None:
    """Issue 11: with IDP_OUTBOUND_ALLOWED_NETWORKS unset, a loopback host is refused at the
    connect step, GET and POST, and nothing reaches it."""
    with serve_slow("ok", document={"keys": []}) as host:
        timed(lambda: fetch_json(host.url, PRODUCTION), "refused address")
        timed(lambda: post_form(host.url, {"logout_token": "x"}, PRODUCTION), "refused address")
        https = f"https://[::1]:{host.port}/"
        timed(lambda: fetch_json(https, PRODUCTION), "refused address")
    assert host.connections == 0


def test_a_name_resolving_to_a_private_address_is_refused_in_production(
    names: dict[str, list[str]],
) -> None:
    """The policy judges the addresses a name resolves to, at each connect: a public-looking
    name that answers 10.0.0.7 or 127.0.0.1 is refused, and nothing is connected to."""
    with serve_slow("ok", document={"keys": []}) as host:
        names["rp.example"] = ["127.0.0.1"]
        names["intranet.example"] = ["10.0.0.7"]
        timed(lambda: fetch_json(f"https://rp.example:{host.port}/", PRODUCTION), "refused address")
        timed(lambda: fetch_json("https://intranet.example/", PRODUCTION), "refused address")
        timed(lambda: fetch_json(f"https://rp.example:{host.port}/", LOOPBACK), "connection failed")
    assert host.connections == 1  # the last one only, allowed: it spoke TLS to a plain host


def test_plain_http_is_refused_outside_development_but_to_allowed_addresses() -> None:
    """Issue 11: http:// outside development only to an IP address the operator allowed (never
    to a name, whose answer can change); development keeps http to local names."""
    assert not PRODUCTION.allows_http("93.184.215.14")
    assert not PRODUCTION.allows_http("rp.example")
    assert not LOOPBACK.allows_http("localhost")
    assert LOOPBACK.allows_http("127.0.0.1") and LOOPBACK.allows_http("[::1]")
    assert DEV.allows_http("localhost")
    with serve_slow("ok") as host:
        url = f"http://localhost:{host.port}/"
        timed(lambda: fetch_json(url, LOOPBACK), "refused URL")
    assert host.connections == 0


@pytest.mark.parametrize("value", ["10.0.0.1/8", "10.0.0.0/33", "intranet", "10.0.0.0/8;fd00::/8"])
def test_allowed_networks_must_be_cidrs(value: str) -> None:
    """IDP_OUTBOUND_ALLOWED_NETWORKS is validated at start: a typo must not silently allow
    nothing, or everything."""
    with pytest.raises(ValueError, match="IDP_OUTBOUND_ALLOWED_NETWORKS"):
        Settings(outbound_allowed_networks=value)


# Compression (issue 11: bytes are counted as received)


def test_requests_ask_for_an_uncompressed_body() -> None:
    """Every request sends Accept-Encoding: identity (RFC 9110 §12.5.3)."""
    with serve_slow("ok", document={}) as host:
        fetch_json(host.url, LOOPBACK)
        post_form(host.url, {}, LOOPBACK)
    assert [seen.headers["accept-encoding"] for seen in host.requests] == ["identity"] * 2


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP", "identity, gzip"])
def test_a_compressed_answer_is_refused(encoding: str) -> None:
    """A response with a Content-Encoding other than identity is an OutboundError."""
    body = gzip.compress(b'{"keys": []}')
    with serve_slow("ok", body=body, headers=[("Content-Encoding", encoding)]) as host:
        timed(lambda: fetch_json(host.url, LOOPBACK), "refused encoding")
        timed(lambda: post_form(host.url, {}, LOOPBACK), "refused encoding")


def test_a_second_content_encoding_header_is_not_overlooked() -> None:
    """Two Content-Encoding fields are one list (RFC 9110 §5.3): gzip in either is refused."""
    headers = [("Content-Encoding", "gzip"), ("Content-Encoding", "identity")]
    with serve_slow("ok", body=b"{}", headers=headers) as host:
        timed(lambda: fetch_json(host.url, LOOPBACK), "refused encoding")


def test_an_identity_encoding_is_accepted() -> None:
    """Content-Encoding: identity is no encoding at all."""
    with serve_slow("ok", body=b"{}", headers=[("Content-Encoding", "identity")]) as host:
        assert fetch_json(host.url, LOOPBACK) == {}


def test_a_gzip_bomb_is_refused_unread_and_never_inflated() -> None:
    """Issue 11: a small gzip body (well under the cap) that inflates to 64 MiB, labelled
    Content-Encoding: gzip, is refused; memory grows by far less than the inflated size."""
    inflated = 64 * 1024 * 1024
    bomb = gzip.compress(b"\0" * inflated, compresslevel=9)
    assert len(bomb) < outbound.JWKS_MAX_BYTES  # the cap alone would let it in
    with serve_slow("ok", body=bomb, headers=[("Content-Encoding", "gzip")]) as host:
        tracemalloc.start()
        try:
            timed(lambda: fetch_json(host.url, LOOPBACK), "refused encoding")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


def test_a_compressed_body_without_a_length_is_refused_before_it_is_read() -> None:
    """Refused on its header: a flood behind Content-Encoding: gzip is not read up to the cap."""
    size = 64 * 1024 * 1024
    headers = [("Content-Encoding", "gzip")]
    with serve_slow("big", size=size, content_length=False, headers=headers) as host:
        timed(lambda: fetch_json(host.url, LOOPBACK), "refused encoding")
    assert host.sent < size // 8
