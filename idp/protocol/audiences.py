"""RFC 8707 resource indicators: the audiences an access token is for.

A client is registered with the audiences it may ask for (`--audience`, repeatable), the first
being its default; with none, the server-wide default audience alone. `resource` at /authorize
names what the grant is for, and at /token what this one access token is for: within the grant's
resources, or, when /authorize named none, within the client's. A refresh may narrow them, never
widen them. Anything else is `invalid_target`, before any state changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from idp.errors import InvalidTarget
from idp.protocol.requests import Params

ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")
MAX_LENGTH = 2000
# More than this in one request is not a real client's need.
MAX_RESOURCES = 8


def is_resource_uri(value: str) -> bool:
    """RFC 8707 §2: an absolute URI (https://api.example, urn:example:api) without a fragment."""
    parts = urlsplit(value)
    return (
        len(value) <= MAX_LENGTH
        and bool(ABSOLUTE_URI.match(value))
        and bool(parts.netloc or parts.path)
        and "#" not in value
    )


def permitted(client_row: Any, default_audience: str) -> list[str]:
    """The audiences this client may get tokens for, its default first."""
    return list(client_row.audiences or ()) or [default_audience]


def requested(params: Params) -> list[str] | None:
    """The `resource` values of a request (in order, without repeats), or None without any."""
    values = params.lists.get("resource")
    if not values:
        return None
    if len(values) > MAX_RESOURCES:
        raise InvalidTarget(f"at most {MAX_RESOURCES} resource parameters")
    if not all(is_resource_uri(v) for v in values):
        raise InvalidTarget("a resource must be an absolute URI without a fragment")
    return list(dict.fromkeys(values))


def within(asked: Sequence[str] | None, allowed: Sequence[str]) -> None:
    if asked and not set(asked) <= set(allowed):
        raise InvalidTarget("the client may not ask for this resource")


def for_grant(params: Params, client_row: Any, default_audience: str) -> list[str] | None:
    """/authorize: the resources the grant is for (None: none named), refused when the client
    may not have one of them."""
    asked = requested(params)
    within(asked, permitted(client_row, default_audience))
    return asked


def for_token(
    params: Params, granted: Sequence[str] | None, client_row: Any, default_audience: str
) -> list[str]:
    """/token: the audiences of this access token. `granted` is what the grant was asked for
    (None: nothing named, so the client's audiences bound it). Without `resource` the token is
    for the whole grant, or for the client's default when the grant named nothing. The client's
    registration as it is now bounds everything: an audience taken away is gone at the next
    refresh."""
    allowed = permitted(client_row, default_audience)
    asked = requested(params)
    within(asked, granted if granted is not None else allowed)
    audiences = asked or (list(granted) if granted else allowed[:1])
    within(audiences, allowed)
    return audiences
