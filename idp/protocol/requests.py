"""From a Starlette request to parameters and an authlib OAuth2Request.

Bodies are parsed with the standard library (every OAuth endpoint is form-encoded) under size
limits, keeping repeated parameters so they can be refused: RFC 6749 §3.1 and §3.2 say request
parameters MUST NOT be included more than once.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749.requests import OAuth2Payload, OAuth2Request
from starlette.requests import Request

MAX_FIELDS = 64
FORM_TYPE = "application/x-www-form-urlencoded"


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def shown_name(key: str) -> str:
    """A parameter's name as it may appear in an error description: as sent when it is plain,
    otherwise not at all. RFC 6749 §5.2 allows only printable ASCII without '"' and '\\' in
    error_description, and authlib refuses (with a ValueError, a 500) to build anything else."""
    return key if _PLAIN_NAME.fullmatch(key) else "?"


class BadParameters(ValueError):
    """The parameters cannot be accepted; the message is safe to show."""


class Params:
    """A multi-dict of request parameters: first values in `data`, all values in `lists`."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self.lists: dict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self.lists[key].append(value)
        self.data: dict[str, str] = {k: v[0] for k, v in self.lists.items()}

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.data.get(key, default)

    def repeated(self, allowed: frozenset[str] = frozenset()) -> list[str]:
        """The parameters sent more than once, except those `allowed` to repeat."""
        return [k for k, values in self.lists.items() if len(values) > 1 and k not in allowed]

    def without(self, *keys: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.pairs if k not in keys]


def parse(raw: str, max_param_bytes: int, opaque: frozenset[str] = frozenset()) -> Params:
    """`opaque` names parameters that are only hashed or signature-checked, never stored, shown
    or logged: they are exempt from the per-parameter cap and the NUL rule (the body cap still
    holds), so an endpoint can answer "not a token I know" for any string (RFC 7662 §2.2,
    RFC 7009 §2.2) instead of refusing the request."""
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadParameters("malformed or too many parameters") from exc
    for key, value in pairs:
        if key in opaque:
            continue
        if len(key) > 64 or len(value.encode()) > max_param_bytes:
            raise BadParameters(f"parameter '{shown_name(key)}' is too long")
        if "\x00" in value:
            raise BadParameters(f"parameter '{shown_name(key)}' holds a NUL character")
    return Params(pairs)


async def read_form(
    request: Request, max_body: int, max_param_bytes: int, opaque: frozenset[str] = frozenset()
) -> Params:
    """The urlencoded body, refused when too large, of another type or not UTF-8."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise BadParameters(f"the body must be {FORM_TYPE}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_body):
        raise BadParameters("request body too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise BadParameters("request body too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadParameters("the body is not UTF-8") from exc
    return parse(text, max_param_bytes, opaque)


def query_params(request: Request, max_param_bytes: int) -> Params:
    """The query string, refused when too long or not UTF-8. Read from the raw scope, not
    request.url, which raises UnicodeDecodeError (a 500) on raw bytes that are not UTF-8."""
    raw: bytes = request.scope.get("query_string", b"")
    if len(raw) > 16 * 1024:
        raise BadParameters("query string too long")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadParameters("the query string is not UTF-8") from None
    return parse(text, max_param_bytes)


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, params: Params) -> None:
        self._params = params

    @property
    def data(self) -> dict[str, str]:
        return self._params.data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._params.lists


class IdpRequest(OAuth2Request):  # type: ignore[misc]
    """authlib's request, built from parameters we already parsed and limited.

    authlib's constructor refuses http URLs; this IdP's transport policy is the issuer setting
    (https, or http on localhost for development), checked once at start, so it is not repeated.
    """

    def __init__(self, method: str, uri: str, headers: Mapping[str, str], params: Params) -> None:
        self.method = method
        self.uri = uri
        self.headers = headers
        self._body = None
        self.payload = _Payload(params)
        self.params = params
        self.client: Any = None
        self.auth_method: str | None = None
        self.user: Any = None
        self.authorization_code: Any = None
        self.refresh_token: Any = None
        self.credential: Any = None
        self._scope: str | None = None
        # Set by the endpoints: the browser session behind an authorization request.
        self.session: Any = None
        self.ip: str | None = None

    @property
    def args(self) -> dict[str, str]:
        return self.params.data if self.method == "GET" else {}

    @property
    def form(self) -> dict[str, str]:
        return self.params.data if self.method == "POST" else {}


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None
