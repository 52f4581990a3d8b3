"""One page of a list, and the opaque cursor that names where the next page starts.

Lists page by key (keyset pagination), never by offset: a page costs one index range scan
however deep it is, and a row added or removed meanwhile neither repeats nor skips one. The
cursor is the last row's sort key, base64url JSON: opaque to callers, and harmless to forge,
since it only says where to resume a query the caller may run anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class InvalidCursor(ValueError):
    """The cursor was not made by this server for this list."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None on the last page


def encode_cursor(key: Sequence[str | int]) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str | None, types: Sequence[type]) -> tuple[object, ...] | None:
    """The sort key a cursor holds, checked against the key's types; None for no cursor."""
    if cursor is None or cursor == "":
        return None
    try:
        if len(cursor) > 512:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("not a cursor of this list") from None
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        # bool is an int in Python, never part of a key
        or not all(
            isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, types, strict=True)
        )
    ):
        raise InvalidCursor("not a cursor of this list")
    return tuple(key)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1 to {MAX_LIMIT}")
    return limit


def page_of(rows: Sequence[T], limit: int, key_of: Callable[[T], Sequence[str | int]]) -> Page[T]:
    """A page from `limit + 1` rows read: the extra row only says there is a next page."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return Page(items, encode_cursor(key_of(items[-1])) if more and items else None)
