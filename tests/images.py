"""Small images for tests, built here (no imaging library): a 1x1 PNG of any size, a 1x1
baseline JPEG, a 1x1 lossless WebP, and things that are not what we accept."""

from __future__ import annotations

import base64
import struct
import zlib


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_PNG_HEAD = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
_PNG_TAIL = _png_chunk(b"IDAT", zlib.compress(b"\x00\x1f\x6f\xb5\xff")) + _png_chunk(b"IEND", b"")
_TEXT_OVERHEAD = 12 + len(b"Comment\x00")  # length, type and CRC of a tEXt chunk, and its key


def png(size: int | None = None) -> bytes:
    """A valid 1x1 RGBA PNG; with `size`, exactly that many bytes (a tEXt chunk pads it)."""
    if size is None:
        return _PNG_HEAD + _PNG_TAIL
    padding = size - len(_PNG_HEAD) - len(_PNG_TAIL) - _TEXT_OVERHEAD
    assert padding >= 0, f"a padded PNG is at least {size - padding} bytes"
    return _PNG_HEAD + _png_chunk(b"tEXt", b"Comment\x00" + b"x" * padding) + _PNG_TAIL


def _jpeg_segment(marker: int, data: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data


def _one_symbol_huffman_table(table: int) -> bytes:
    """One code of one bit, for symbol 0: DC difference 0, or (AC) end of block."""
    return bytes([table]) + bytes([1] + [0] * 15) + b"\x00"


# One 8x8 block of mid grey: DC difference 0 (code "0"), end of block (code "0"), padded with 1s.
JPEG = (
    b"\xff\xd8"
    + _jpeg_segment(0xDB, b"\x00" + b"\x01" * 64)  # quantisation table 0
    + _jpeg_segment(0xC0, b"\x08\x00\x01\x00\x01\x01\x01\x11\x00")  # baseline, 1x1, 1 component
    + _jpeg_segment(0xC4, _one_symbol_huffman_table(0x00))
    + _jpeg_segment(0xC4, _one_symbol_huffman_table(0x10))
    + _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    + b"\x3f"
    + b"\xff\xd9"
)

# A 1x1 lossless WebP (VP8L), the image feature detectors use.
WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
HTML = b"<!doctype html><script>alert(document.domain)</script>"
