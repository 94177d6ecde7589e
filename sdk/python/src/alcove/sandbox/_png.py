"""PNG encoding of desktop screenshots, with the standard library (``zlib`` and ``struct``).

The framebuffer arrives as 32-bit little-endian pixels with red at bit 16, green at 8 and blue at 0,
that is the bytes B, G, R, X per pixel (see :mod:`._rfb`). :func:`bgrx_to_rgb` reorders whole
channels at once with extended slices (C loops, a few milliseconds for 1280x800) rather than
walking pixels in Python; :func:`encode_png` writes an 8-bit RGB PNG with filter 0 ("none") on every
row, which costs nothing to compute and leaves the compression to zlib.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE_RGB = 2
_BIT_DEPTH = 8
_COMPRESSION_LEVEL = 6  # zlib's default: screens are mostly flat, so higher levels gain little


def bgrx_to_rgb(pixels: bytes | bytearray | memoryview, width: int, height: int) -> bytearray:
    """Reorder ``width * height`` 4-byte B, G, R, X pixels into 3-byte R, G, B ones."""
    count = width * height
    if len(pixels) != count * 4:
        raise ValueError(f"expected {count * 4} bytes for {width}x{height} pixels, got {len(pixels)}")
    # Extended slices of bytes / bytearray are C loops; those of a memoryview are far slower.
    source = pixels.tobytes() if isinstance(pixels, memoryview) else pixels
    rgb = bytearray(count * 3)
    rgb[0::3] = source[2::4]
    rgb[1::3] = source[1::4]
    rgb[2::3] = source[0::4]
    return rgb


def _chunk(kind: bytes, data: bytes) -> bytes:
    # The CRC covers the chunk type and its data, not the length.
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(width: int, height: int, rgb: bytes | bytearray | memoryview) -> bytes:
    """An 8-bit RGB PNG of ``width`` x ``height`` pixels given as packed R, G, B bytes, row by row."""
    if width <= 0 or height <= 0:
        raise ValueError(f"a PNG needs a positive size, got {width}x{height}")
    stride = width * 3
    if len(rgb) != stride * height:
        raise ValueError(f"expected {stride * height} bytes for {width}x{height} RGB pixels, got {len(rgb)}")
    rows = memoryview(rgb)
    # Each scanline starts with its filter type byte (0: none).
    raw = b"".join(b"\x00" + rows[offset : offset + stride] for offset in range(0, stride * height, stride))
    header = struct.pack(">IIBBBBB", width, height, _BIT_DEPTH, _COLOR_TYPE_RGB, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, _COMPRESSION_LEVEL))
        + _chunk(b"IEND", b"")
    )
