"""The transport under idp.outbound: httpx's URL parser, and httpcore driven through a
network backend that connects only to the approved addresses, each operation within what is
left of the call's deadline. Imported on the first outbound request."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from functools import cache
from typing import Any

import httpcore
import httpx

from idp.outbound import OutboundError, OutboundPolicy, OutboundResponse, check_address


def parse_target(url: str, policy: OutboundPolicy) -> tuple[httpx.URL, int]:
    """The parsed URL and its port; "refused URL" for anything but http(s) to a host, with no
    userinfo, and http only where the policy allows it."""
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
    if policy.refused_host(target.raw_host.decode()):  # an IP address: refused before anything
        raise OutboundError("refused address")
    if target.scheme == "http" and not policy.allows_http(target.raw_host.decode()):
        raise OutboundError("refused URL")
    return target, port


def request(
    method: str,
    url: str,
    policy: OutboundPolicy,
    headers: list[tuple[bytes, bytes]],
    content: bytes | None,
    deadline: float,
    max_bytes: int,
) -> OutboundResponse:
    end = time.monotonic() + deadline
    target, port = parse_target(url, policy)
    addresses = check_address(target.raw_host.decode(), port, end - time.monotonic(), policy)
    backend = _Backend(addresses, port, end)
    # The Host header is the URL's own authority (httpcore would write an IPv6 one unbracketed).
    # identity: a compressed body would be inflated past the cap that counts received bytes.
    headers = [(b"Host", target.netloc), (b"Accept-Encoding", b"identity"), *headers]
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
            # RFC 9110 §8.4: we asked for identity; a gzip body (a "zip bomb" inflates a
            # thousandfold) is refused unread, never inflated.
            encodings = [v for k, v in response.headers if k.lower() == b"content-encoding"]
            if any(v.strip().lower() not in (b"", b"identity") for v in encodings):
                raise OutboundError("refused encoding")
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
