"""Every HTTP request this IdP makes to another host: an overall deadline, a size cap, no
redirects, no compressed bodies, no credentials in URLs, and an address policy (OutboundPolicy)
checked on the very address connected to: outside development only public addresses, or the
networks an operator allows; never a link-local or cloud metadata address.

httpx's timeout is per read and restarts with every byte, so a dripping host is never timed
out. Here the name lookup and each socket operation (connect, TLS handshake, write, read) get
at most what is left of one deadline per call, through a network backend for httpcore, the
engine under httpx. Proxy variables are not honoured: the address policy must see the address
connected to."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from idp.settings import Network, Settings

if TYPE_CHECKING:
    import httpx

JWKS_DEADLINE = 5.0
JWKS_MAX_BYTES = 64 * 1024
LOGOUT_DEADLINE = 5.0
LOGOUT_MAX_BYTES = 16 * 1024  # a logout endpoint's answer is its status; its body is ignored
WEBHOOK_DEADLINE = 5.0
WEBHOOK_MAX_BYTES = 16 * 1024  # a webhook receiver's answer is its status; its body is ignored
LOGO_DEADLINE = 5.0
LOGO_MAX_BYTES = 256 * 1024
IMAGE_ACCEPT = b"image/png, image/jpeg, image/webp"


class OutboundError(Exception):
    """A request to another host failed; the message is short and safe to log."""


@dataclass(frozen=True)
class OutboundResponse:
    """What a host answered: its status, its body (at most max_bytes) and its headers."""

    status: int
    body: bytes
    headers: dict[str, str]  # names in lower case


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Refused whatever IDP_OUTBOUND_ALLOWED_NETWORKS says. Link-local is where clouds serve instance
# credentials (169.254.169.254), as are AWS's fd00:ec2::254 over IPv6 and Alibaba Cloud's
# 100.100.100.200; a connection to 0.0.0.0 or :: reaches this very host.
ALWAYS_REFUSED = _networks(
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "0.0.0.0/8", "::/128"
)
# This host and the networks of one site: loopback, private (RFC 1918), shared address space
# (CGNAT, RFC 6598) and unique local (RFC 4193). Reached in development, or when allowed.
LOCAL = _networks(
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
)
# Never a relying party (the IANA special-purpose registries, RFC 6890): IETF protocol
# assignments (Teredo included), documentation, benchmarking, 6to4 relays, local-use NAT64,
# discard, deprecated site-local, multicast and reserved (255.255.255.255 included).
SPECIAL = _networks(
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "3fff::/20",
    "5f00::/16",
    "fec0::/10",
    "ff00::/8",
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated


def embedded(address: Address) -> Address:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, IPv4-translated, NAT64, 6to4,
    IPv4-compatible), else the address itself: the policy judges where the packets end up."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64 or address in _TRANSLATED:
        return low
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d (RFC 4291 §2.5.5.1)
        return low
    return address


def _within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


@dataclass(frozen=True)
class OutboundPolicy:
    """Which addresses this server may connect to, built once from the settings (the Runtime
    holds it) and given to every outbound call.

    Outside development only public addresses, plus the networks the operator allows
    (IDP_OUTBOUND_ALLOWED_NETWORKS, for relying parties on premises): a registered URL must not
    turn this server into a way into its own network (SSRF). Development (a plain-http
    localhost issuer) also reaches loopback and private networks. Link-local, metadata and
    unspecified addresses are refused whatever the settings."""

    development: bool = False
    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(settings.is_development, settings.outbound_networks)

    def refused(self, address: Address) -> bool:
        """Whether a connection to this address is refused."""
        address = embedded(address)
        if _within(address, ALWAYS_REFUSED):
            return True
        if _within(address, self.allowed):
            return False
        if _within(address, SPECIAL):
            return True
        if _within(address, LOCAL):
            return not self.development
        return address.is_multicast or address.is_reserved or not address.is_global

    def refused_host(self, host: str) -> bool:
        """Whether host is an IP address (IPv6 bracketed or not) that the policy refuses."""
        try:
            address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        except ValueError:
            return False  # a name: judged by the addresses it resolves to, at each connect
        return self.refused(address)

    def allows_http(self, host: str) -> bool:
        """Plain http only in development, or to an IP address inside an allowed network (an
        operator's own relying party on premises); never to a name, whose answer can change.
        Everything else is https: a document or token on the way must not be read or changed."""
        if self.development:
            return True
        try:
            address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        except ValueError:
            return False
        return _within(embedded(address), self.allowed) and not self.refused(address)


def check_address(host: str, port: int, timeout: float, policy: OutboundPolicy) -> list[str]:
    """Resolve host to the addresses to connect to; "refused address" if the policy refuses
    any of them (one refused address among several refuses the name: the next lookup could
    answer that one alone)."""
    answer: list[Any] = []

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            answer.append(exc)

    # getaddrinfo has no timeout of its own: a lookup that outlives the deadline is left to
    # finish alone. A thread per lookup, so one host's dead name server cannot delay another's.
    thread = threading.Thread(target=lookup, name="outbound-lookup", daemon=True)
    thread.start()
    thread.join(timeout)
    if not answer:
        raise OutboundError("timed out")
    if isinstance(answer[0], Exception):
        raise OutboundError("connection failed") from answer[0]
    addresses = [str(info[4][0]) for info in answer[0]]
    if not addresses or any(policy.refused(ipaddress.ip_address(a)) for a in addresses):
        raise OutboundError("refused address")
    return addresses


def check_target(url: str, policy: OutboundPolicy, *, deadline: float = JWKS_DEADLINE) -> None:
    """Whether url could be fetched under the policy (its scheme, and the addresses its host
    resolves to now), without connecting: for registration, with no transaction open."""
    end = time.monotonic() + deadline
    target, port = _target(url, policy)
    check_address(target.raw_host.decode(), port, end - time.monotonic(), policy)


def fetch_json(
    url: str,
    policy: OutboundPolicy,
    *,
    deadline: float = JWKS_DEADLINE,
    max_bytes: int = JWKS_MAX_BYTES,
) -> dict[str, Any]:
    """GET a JSON object; anything but a 200 carrying a JSON object is an OutboundError."""
    accept = [(b"Accept", b"application/json")]
    response = _request("GET", url, policy, accept, None, deadline, max_bytes)
    if response.status != 200:
        raise OutboundError(f"HTTP {response.status}")
    try:
        document: object = json.loads(response.body)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
        raise OutboundError("not JSON") from exc
    if not isinstance(document, dict):
        raise OutboundError("not a JSON object")
    return document


@dataclass(frozen=True)
class Image:
    """An image another host served: its type, as its first bytes say, and its bytes."""

    content_type: str
    body: bytes


def fetch_image(
    url: str,
    policy: OutboundPolicy,
    *,
    deadline: float = LOGO_DEADLINE,
    max_bytes: int = LOGO_MAX_BYTES,
) -> Image:
    """GET a whole PNG, JPEG or WebP image; anything else is an OutboundError.

    The type comes from the bytes, never from the Content-Type header, which the host chooses:
    an SVG (which can carry script), an HTML page or a GIF is refused whatever it is labelled."""
    response = _request("GET", url, policy, [(b"Accept", IMAGE_ACCEPT)], None, deadline, max_bytes)
    if response.status != 200:
        raise OutboundError(f"HTTP {response.status}")
    content_type = image_type(response.body)
    if content_type is None:
        raise OutboundError("not a PNG, JPEG or WebP image")
    if not _whole(content_type, response.body):
        raise OutboundError("incomplete image")
    return Image(content_type, response.body)


def image_type(data: bytes) -> str | None:
    """The media type that data's signature (its magic bytes) names, if PNG, JPEG or WebP."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _whole(content_type: str, data: bytes) -> bool:
    """Whether data ends where its format says an image ends. A body that stops early (a
    Content-Length smaller than the image, a connection closed halfway) is refused here rather
    than shown as a broken image on every consent page."""
    if content_type == "image/png":  # PNG §5.6: IEND, with its fixed CRC, is the last chunk
        return data.endswith(b"\x00\x00\x00\x00IEND\xaeB`\x82")
    if content_type == "image/jpeg":  # ITU T.81 §B.2.1: EOI ends the image
        return data.endswith(b"\xff\xd9")
    # RIFF: the size after the tag counts every byte after it
    return len(data) >= 12 and int.from_bytes(data[4:8], "little") == len(data) - 8


def post_form(
    url: str,
    data: dict[str, str],
    policy: OutboundPolicy,
    *,
    deadline: float = LOGOUT_DEADLINE,
    max_bytes: int = LOGOUT_MAX_BYTES,
) -> OutboundResponse:
    """POST data as application/x-www-form-urlencoded; any status is returned, not raised."""
    form = [(b"Content-Type", b"application/x-www-form-urlencoded")]
    return _request("POST", url, policy, form, urlencode(data).encode(), deadline, max_bytes)


def post_json(
    url: str,
    body: bytes,
    policy: OutboundPolicy,
    *,
    headers: Iterable[tuple[str, str]] = (),
    deadline: float = WEBHOOK_DEADLINE,
    max_bytes: int = WEBHOOK_MAX_BYTES,
) -> OutboundResponse:
    """POST body, already serialised JSON (a signature may cover its exact bytes), with the
    extra headers given; any status is returned, not raised."""
    sent = [(b"Content-Type", b"application/json")]
    sent += [(k.encode("ascii"), v.encode("ascii")) for k, v in headers]
    return _request("POST", url, policy, sent, body, deadline, max_bytes)


# httpx and httpcore (with h11 and idna, ~3 MiB resident per worker) are loaded on the
# first outbound request: most workers never make one.
def _target(url: str, policy: OutboundPolicy) -> tuple[httpx.URL, int]:
    from idp.outbound.transport import parse_target

    return parse_target(url, policy)


def _request(
    method: str,
    url: str,
    policy: OutboundPolicy,
    headers: list[tuple[bytes, bytes]],
    content: bytes | None,
    deadline: float,
    max_bytes: int,
) -> OutboundResponse:
    from idp.outbound.transport import request

    return request(method, url, policy, headers, content, deadline, max_bytes)
