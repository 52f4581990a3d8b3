"""idp.outbound, the one HTTP client for requests to other hosts, against misbehaving hosts on
127.0.0.1 (tests.slow_host). Deadlines are 1 s here, and drips faster than that, so a client
whose timeout restarts with every byte would never give up."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from idp import outbound
from idp.outbound import OutboundError, fetch_json, post_form
from tests.slow_host import serve_slow

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
        elapsed = timed(lambda: fetch_json(host.url, deadline=DEADLINE), "timed out")
    assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK
    assert host.sent >= 2  # it was dripping, not silent


def test_a_dripping_status_line_is_cut_off_at_the_deadline() -> None:
    """A host that drips its status line and headers a byte at a time is cut off on time."""
    with serve_slow("drip_headers", interval=DRIP) as host:
        elapsed = timed(lambda: fetch_json(host.url, deadline=DEADLINE), "timed out")
    assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK
    assert host.sent >= 2


def test_a_dripping_tls_handshake_is_cut_off_at_the_deadline() -> None:
    """An https host that drips its handshake a byte at a time is cut off on time."""
    with serve_slow("drip_tls", interval=DRIP) as host:
        url = f"https://127.0.0.1:{host.port}/"
        elapsed = timed(lambda: fetch_json(url, deadline=DEADLINE), "timed out")
    assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK
    assert host.sent >= 2


def test_a_host_that_never_answers_is_cut_off_at_the_deadline() -> None:
    """A host that reads the request and never answers is cut off on time, GET and POST."""
    with serve_slow("hang") as host:
        elapsed = timed(lambda: fetch_json(host.url, deadline=DEADLINE), "timed out")
        assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK
        form = {"logout_token": "x"}
        elapsed = timed(lambda: post_form(host.url, form, deadline=DEADLINE), "timed out")
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
        elapsed = timed(lambda: fetch_json(host.url, deadline=0.5), "timed out")
    assert elapsed < 0.5 + SLACK


def test_a_slow_name_lookup_is_cut_off_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name lookup that does not finish counts against the deadline too."""

    def getaddrinfo(*_args: Any, **_kwargs: Any) -> list[Any]:
        time.sleep(1.0)  # a resolver that does not answer (the lookup thread is abandoned)
        return []

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    elapsed = timed(lambda: fetch_json("http://rp.example/", deadline=0.3), "timed out")
    assert elapsed < 0.3 + 0.3


# The size cap


def test_a_body_over_the_cap_is_refused_on_its_content_length() -> None:
    """A Content-Length over the cap is refused before any of the body is read."""
    body = b" " * (outbound.JWKS_MAX_BYTES + 1)
    with serve_slow("drip", body=body, interval=DRIP) as host:
        elapsed = timed(lambda: fetch_json(host.url), "too large")
    assert elapsed < 0.5  # it did not wait for the dripping body


def test_a_body_over_the_cap_is_refused_while_streaming_and_reading_stops() -> None:
    """A body with no Content-Length is read only up to the cap: the host cannot flood us."""
    size = 256 * 1024 * 1024
    with serve_slow("big", size=size, content_length=False) as host:
        timed(lambda: fetch_json(host.url, max_bytes=64 * 1024), "too large")
    assert host.sent < size // 8  # what the socket buffers took before the client hung up


def test_a_body_of_exactly_the_cap_is_accepted() -> None:
    """The cap is inclusive: a document of max_bytes is read."""
    document = {"keys": [], "pad": ""}
    document["pad"] = "x" * (1000 - len(b'{"keys": [], "pad": ""}'))
    with serve_slow("ok", document=document) as host:
        assert fetch_json(host.url, max_bytes=1000) == document
        timed(lambda: fetch_json(host.url, max_bytes=999), "too large")


# What is not followed, and what is not a JSON object


def test_a_redirect_is_not_followed() -> None:
    """A 302 is an error for fetch_json and a status for post_form; its target is never asked."""
    with (
        serve_slow("ok", document={"keys": []}) as target,
        serve_slow("redirect", location=target.url) as host,
    ):
        timed(lambda: fetch_json(host.url), "HTTP 302")
        assert post_form(host.url, {"logout_token": "x"}).status == 302
    assert target.connections == 0


@pytest.mark.parametrize("status", [201, 204, 404, 500])
def test_fetch_json_refuses_any_status_but_200(status: int) -> None:
    """Only a 200 carries a document."""
    with serve_slow("status", status=status, body=b"{}") as host:
        timed(lambda: fetch_json(host.url), f"HTTP {status}")


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
        timed(lambda: fetch_json(host.url), message)


def test_fetch_json_asks_for_json_and_returns_the_document() -> None:
    """fetch_json GETs with Accept: application/json and returns the object."""
    with serve_slow("ok", document={"keys": [{"kid": "a"}]}) as host:
        assert fetch_json(host.url + "jwks.json") == {"keys": [{"kid": "a"}]}
    (seen,) = host.requests
    assert (seen.method, seen.path) == ("GET", "/jwks.json")
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["host"] == f"127.0.0.1:{host.port}"


# post_form


@pytest.mark.parametrize("status", [200, 204, 400, 500])
def test_post_form_sends_a_urlencoded_form_and_returns_the_status(status: int) -> None:
    """post_form sends application/x-www-form-urlencoded and hands back any status."""
    with serve_slow("status", status=status, body=b"") as host:
        response = post_form(host.url + "logout", {"logout_token": "a b&c=d"})
    assert response.status == status
    (seen,) = host.requests
    assert (seen.method, seen.path) == ("POST", "/logout")
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen.body == b"logout_token=a+b%26c%3Dd"


def test_a_closed_port_is_a_connection_failure() -> None:
    """Nothing listening is "connection failed", at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    elapsed = timed(lambda: fetch_json(f"http://127.0.0.1:{port}/"), "connection failed")
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
        timed(lambda: fetch_json(url.format(port=host.port)), "refused URL")
        timed(lambda: post_form(url.format(port=host.port), {}), "refused URL")
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
    assert timed(lambda: fetch_json(url), "refused address") < 0.5


def test_a_name_is_refused_if_any_of_its_addresses_is_link_local(
    names: dict[str, list[str]],
) -> None:
    """One link-local address among a name's addresses refuses the name, even on loopback."""
    with serve_slow("ok") as host:
        names["rp.example"] = ["127.0.0.1", "169.254.169.254"]
        timed(lambda: fetch_json(f"http://rp.example:{host.port}/"), "refused address")
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
        assert fetch_json(f"http://{name}:{host.port}/") == {"keys": []}
    assert host.requests[0].headers["host"] == f"{ascii_name}:{host.port}"


def test_a_name_whose_first_address_refuses_is_reached_at_the_next(
    names: dict[str, list[str]],
) -> None:
    """Like socket.create_connection, each approved address is tried in turn."""
    with serve_slow("ok", document={"keys": []}) as host:
        names["rp.example"] = ["127.0.0.2", "127.0.0.1"]  # nothing listens on 127.0.0.2
        assert fetch_json(f"http://rp.example:{host.port}/") == {"keys": []}
    assert host.connections == 1


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("169.254.169.254", True),
        ("fe80::1", True),
        ("::ffff:169.254.169.254", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("192.168.1.10", False),
        ("fd12:3456::1", False),
        ("93.184.215.14", False),
    ],
)
def test_the_address_policy_allows_loopback_and_private_networks(
    address: str, refused: bool
) -> None:
    """Only link-local and metadata addresses are refused: relying parties live on private nets."""
    assert outbound.refused(ipaddress.ip_address(address)) is refused
