"""The URIs a client registers: checked once, at registration, with a one-line reason."""

from __future__ import annotations

from urllib.parse import urlsplit

from idp.outbound import OutboundPolicy
from idp.protocol.audiences import is_resource_uri
from idp.settings import LOOPBACK_HOSTS

MAX_URI = 2000


class InvalidRegistration(ValueError):
    """A client registration or update that cannot be accepted.

    `fields` maps RFC 7591 §2 field names (an item of a list as `redirect_uris[1]`) to a
    one-line reason, so the CLI, the admin API and the admin pages can each show the problem
    next to the field; str() is one line, `field: reason` for each."""

    def __init__(self, message: str | None = None, *, fields: dict[str, str] | None = None):
        self.fields: dict[str, str] = dict(fields or {})
        if message is None:
            message = "; ".join(f"{name}: {reason}" for name, reason in self.fields.items())
        super().__init__(message)


# The name admin callers use; a registration is a client not yet written.
InvalidClient = InvalidRegistration


def check_redirect_uri(uri: str, what: str = "redirect URI") -> None:
    """RFC 9700 §4.1.3 and RFC 8252: exact, absolute, no fragment, https or loopback http."""
    if "*" in uri:
        raise InvalidRegistration(f"{what} {uri!r} contains a wildcard; register exact URIs")
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise InvalidRegistration(f"{what} {uri!r} is not a valid URI") from None
    if "#" in uri:
        raise InvalidRegistration(f"{what} {uri!r} has a fragment (RFC 6749 §3.1.2)")
    if any(c.isspace() for c in uri) or len(uri) > 2000:
        raise InvalidRegistration(f"{what} {uri!r} is not a valid URI")
    if parts.scheme == "https":
        if not parts.hostname:
            raise InvalidRegistration(f"{what} {uri!r} has no host")
        return
    if parts.scheme == "http":
        if parts.hostname not in LOOPBACK_HOSTS:
            raise InvalidRegistration(
                f"{what} {uri!r} uses http for a non-loopback host; use https"
            )
        return
    # RFC 8252 §7.1: native apps may use a private-use scheme in reverse-domain form.
    if "." in parts.scheme and not parts.netloc:
        return
    raise InvalidRegistration(
        f"{what} {uri!r} must be https, loopback http or a private-use scheme"
    )


def check_url(uri: str, what: str) -> None:
    """A URL this server fetches, or puts on a page: absolute https with a host (or http on a
    loopback host), no userinfo, no fragment, no whitespace or control characters."""
    if len(uri) > MAX_URI:
        raise InvalidRegistration(f"{what} is longer than {MAX_URI} characters")
    # Not printable covers control characters and invisible ones (bidi overrides, zero-width
    # spaces) that would make a URL shown to a person read as another.
    if any(c.isspace() or not c.isprintable() for c in uri):
        raise InvalidRegistration(f"{what} {uri!r} contains whitespace or a control character")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number or too big)
    except ValueError:
        raise InvalidRegistration(f"{what} {uri!r} is not a valid URL") from None
    https = parts.scheme == "https" and parts.hostname
    if not https and not (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        raise InvalidRegistration(f"{what} {uri!r} must be https (or http on a loopback host)")
    # A password in a URL would be sent, logged and shown; "user@" can also make a URL read as
    # another host (https://bank.example@evil.example/).
    if "@" in parts.netloc:
        raise InvalidRegistration(f"{what} {uri!r} must not carry a user name or password")
    if "#" in uri:
        raise InvalidRegistration(f"{what} {uri!r} must not have a fragment")


def check_fetched_url(uri: str, what: str, policy: OutboundPolicy) -> None:
    """A URL this server sends requests to (jwks_uri, backchannel_logout_uri): check_url(), and
    https outside development (OutboundPolicy.allows_http), and not an IP address the address
    policy refuses. Names are resolved by fetch_logo(), outside any transaction."""
    check_url(uri, what)
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.scheme == "http" and not policy.allows_http(host):
        raise InvalidRegistration(
            f"{what} {uri!r} must be https (plain http is for development, or for an address "
            "in IDP_OUTBOUND_ALLOWED_NETWORKS)"
        )
    if policy.refused_host(host):
        raise InvalidRegistration(f"{what} {uri!r}: {REFUSED_ADDRESS}")


REFUSED_ADDRESS = (
    "this server does not connect to that address (loopback, private, link-local, metadata or "
    "reserved; on-premises networks can be allowed with IDP_OUTBOUND_ALLOWED_NETWORKS)"
)


def check_audience(audience: str) -> None:
    """RFC 8707 §2: a resource is an absolute URI (https://api.example, urn:example:api) without
    a fragment."""
    if not is_resource_uri(audience):
        raise InvalidRegistration(f"audience {audience!r} must be an absolute URI without fragment")
