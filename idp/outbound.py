"""Every HTTP request this IdP makes to another host: an overall deadline, a size cap, no
redirects, no credentials in URLs, and never a cloud metadata address.

httpx's timeout is per read and restarts with every byte, so a dripping host is never timed
out. Here the name lookup and each socket operation (connect, TLS handshake, write, read) get
at most what is left of one deadline per call, through a network backend for httpcore, the
engine under httpx. Proxy variables are not honoured: the address policy must see the address
connected to."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlencode

import httpcore
import httpx

JWKS_DEADLINE = 5.0
JWKS_MAX_BYTES = 64 * 1024
LOGOUT_DEADLINE = 5.0
LOGOUT_MAX_BYTES = 16 * 1024  # a logout endpoint's answer is its status; its body is ignored
LOGO_DEADLINE = 5.0
LOGO_MAX_BYTES = 256 * 1024
IMAGE_ACCEPT = b"image/png, image/jpeg, image/webp"

# Clouds' instance metadata outside 169.254.0.0/16: AWS over IPv6, Alibaba Cloud.
_METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}


class OutboundError(Exception):
    """A request to another host failed; the message is short and safe to log."""


@dataclass(frozen=True)
class OutboundResponse:
    """What a host answered: its status, its body (at most max_bytes) and its headers."""

    status: int
    body: bytes
    headers: dict[str, str]  # names in lower case


def refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """The address policy: refuse link-local (169.254.0.0/16, fe80::/10) and metadata addresses.

    They are where clouds serve instance credentials, never a relying party. Loopback and
    private ranges are allowed: operators run relying parties on private networks."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_link_local or address in _METADATA


def check_address(host: str, port: int, timeout: float) -> list[str]:
    """Resolve host to the addresses to connect to; "refused address" if any is refused."""
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
    if not addresses or any(refused(ipaddress.ip_address(a)) for a in addresses):
        raise OutboundError("refused address")
    return addresses


def fetch_json(
    url: str, *, deadline: float = JWKS_DEADLINE, max_bytes: int = JWKS_MAX_BYTES
) -> dict[str, Any]:
    """GET a JSON object; anything but a 200 carrying a JSON object is an OutboundError."""
    response = _request("GET", url, [(b"Accept", b"application/json")], None, deadline, max_bytes)
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
    url: str, *, deadline: float = LOGO_DEADLINE, max_bytes: int = LOGO_MAX_BYTES
) -> Image:
    """GET a whole PNG, JPEG or WebP image; anything else is an OutboundError.

    The type comes from the bytes, never from the Content-Type header, which the host chooses:
    an SVG (which can carry script), an HTML page or a GIF is refused whatever it is labelled."""
    response = _request("GET", url, [(b"Accept", IMAGE_ACCEPT)], None, deadline, max_bytes)
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
    *,
    deadline: float = LOGOUT_DEADLINE,
    max_bytes: int = LOGOUT_MAX_BYTES,
) -> OutboundResponse:
    """POST data as application/x-www-form-urlencoded; any status is returned, not raised."""
    form = [(b"Content-Type", b"application/x-www-form-urlencoded")]
    return _request("POST", url, form, urlencode(data).encode(), deadline, max_bytes)


def _request(
    method: str,
    url: str,
    headers: list[tuple[bytes, bytes]],
    content: bytes | None,
    deadline: float,
    max_bytes: int,
) -> OutboundResponse:
    end = time.monotonic() + deadline
    try:
        target = httpx.URL(url)  # httpx's parser: IDNA, IPv6 brackets, percent-encoding
    except httpx.InvalidURL as exc:
        raise OutboundError("refused URL") from exc
    port = target.port or (443 if target.scheme == "https" else 80)
    # No userinfo: a password in a registered URL would be sent, and logged, with every request.
    if target.scheme not in ("http", "https") or not target.raw_host or target.userinfo:
        raise OutboundError("refused URL")
    if not 0 < port < 65536:  # httpx's parser allows any number
        raise OutboundError("refused URL")
    addresses = check_address(target.raw_host.decode(), port, end - time.monotonic())
    backend = _Backend(addresses, port, end)
    # The Host header is the URL's own authority (httpcore would write an IPv6 one unbracketed).
    headers = [(b"Host", target.netloc), *headers]
    request = httpcore.URL(
        scheme=target.raw_scheme, host=target.raw_host, port=port, target=target.raw_path
    )
    body = bytearray()
    try:
        # httpcore never follows redirects: a 3xx is returned like any other status.
        with (
            httpcore.ConnectionPool(ssl_context=_ssl_context(), network_backend=backend) as pool,
            pool.stream(method, request, headers=headers, content=content) as response,
        ):
            answered = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers
            }
            if int(answered.get("content-length") or 0) > max_bytes:  # h11 checked it is a number
                raise OutboundError("too large")
            for chunk in response.iter_stream():
                if len(body) + len(chunk) > max_bytes:
                    raise OutboundError("too large")
                body += chunk
    except httpcore.TimeoutException as exc:
        raise OutboundError("timed out") from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        raise OutboundError("connection failed") from exc
    return OutboundResponse(response.status, bytes(body), answered)


@cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()  # the trust store httpx uses, SSL_CERT_FILE included


class _Backend(httpcore.NetworkBackend):
    """Connects only to the addresses the policy approved: a second lookup could answer another."""

    def __init__(self, addresses: list[str], port: int, end: float) -> None:
        self._addresses, self._port, self._end = addresses, port, end

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error = httpcore.ConnectError("no address")
        for address in self._addresses:  # in getaddrinfo's order, as socket.create_connection
            try:
                inner = httpcore.SyncBackend().connect_tcp(
                    address, self._port, _budget(self._end, timeout), local_address, socket_options
                )
                return _Stream(inner, self._end)
            except httpcore.ConnectError as exc:
                error = exc
        raise error


class _Stream(httpcore.NetworkStream):
    """A connection whose every operation gets at most what is left of the deadline.

    The deadline is checked before each read, so a dripping host's next byte cannot start a
    fresh timeout, and a read waits at most the remainder. CPython bounds a whole TLS handshake
    and a whole TLS record read by the socket timeout, so those cannot be stretched either.
    (A write is one send here: a form or a GET is far smaller than a socket buffer.)"""

    def __init__(self, inner: httpcore.NetworkStream, end: float) -> None:
        self._inner, self._end = inner, end

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _budget(self._end, timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _budget(self._end, timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        budget = _budget(self._end, timeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, budget), self._end)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _budget(end: float, timeout: float | None) -> float:
    left = end - time.monotonic()
    if left <= 0:
        raise httpcore.TimeoutException("deadline passed")
    return left if timeout is None else min(timeout, left)
