"""Decode a large PNG a strip of rows at a time, shrinking each strip as it comes, so a 30000x30000 photo
never sits in memory at full size (Pillow's PNG decoder only decodes a whole image; libjpeg's `draft` has
no PNG counterpart).

How: zlib inflates the IDAT stream in Python (C speed) a strip of filtered rows at a time; each strip,
preceded by the previous strip's last row as an unfiltered row (PNG's Up/Average/Paeth filters read it),
goes through Pillow's own PNG row decoder as a stored (uncompressed) zlib stream. So the unfiltering
and unpacking are Pillow's, bit for bit; only the streaming is ours. Interlaced PNGs are not streamed.
"""

from __future__ import annotations

import zlib
from typing import Callable, Iterator

from PIL import Image

# Bytes of decoded rows per strip: small against the memory budget, large enough to keep calls few.
STRIP_BYTES = 32 * 1024 * 1024
_READ_BYTES = 1 << 20


def can_stream(image: Image.Image) -> bool:
    """True for a non-interlaced PNG with one image tile, in a mode whose rows Pillow can pack back."""
    if image.format != "PNG" or image.info.get("interlace") or len(getattr(image, "tile", []) or []) != 1:
        return False
    tile = image.tile[0]
    if tile[0] != "zip":
        return False
    try:
        Image.new(image.mode, (1, 1)).tobytes("raw", _rawmode(tile))
    except (ValueError, OSError, KeyError):
        return False
    return True


def _rawmode(tile) -> str:
    args = tile[3]
    return args if isinstance(args, str) else args[0]


def iter_strips(image: Image.Image, rows: int) -> Iterator[Image.Image]:
    """The PNG's rows, `rows` at a time (the last strip may be shorter), as images of the PNG's mode
    (palette and transparency info attached). `image` must pass can_stream and not be loaded yet."""
    tile = image.tile[0]
    rawmode = _rawmode(tile)
    width, height = image.size
    row_bytes = len(Image.new(image.mode, (width, 1)).tobytes("raw", rawmode))
    stride = row_bytes + 1  # each row starts with its filter type byte
    image.load_prepare()
    image.fp.seek(tile[2])
    read: Callable[[int], bytes] = image.load_read
    inflate = zlib.decompressobj()
    previous: bytes | None = None
    pending = b""
    palette = _palette(image)  # read before decoding: getpalette() would decode the whole image
    y = 0
    while y < height:
        count = min(rows, height - y)
        want = count * stride
        parts, have = [pending], len(pending)
        while have < want:
            data = inflate.unconsumed_tail or read(_READ_BYTES)
            if not data:
                raise EOFError(f"image data ends at row {y + have // stride} of {height}: the file is truncated")
            out = inflate.decompress(data, want - have)
            parts.append(out)
            have += len(out)
        raw = b"".join(parts)
        pending, raw = raw[want:], raw[:want]
        head = b"\x00" + previous if previous is not None else b""
        total = count + (previous is not None)
        decoder = Image._getdecoder(image.mode, "zip", rawmode)
        strip_core = Image.core.new(image.mode, (width, total))
        decoder.setimage(strip_core, (0, 0, width, total))
        status, code = decoder.decode(zlib.compress(head + raw, 0))
        if code < 0 and status >= 0:
            raise OSError(f"PNG rows {y}-{y + count} could not be decoded (error {code})")
        strip = Image.Image()._new(strip_core)
        if previous is not None:
            strip = strip.crop((0, 1, width, total))
        previous = strip.crop((0, count - 1, width, count)).tobytes("raw", rawmode)
        if palette is not None:
            strip.putpalette(*palette)
        if "transparency" in image.info:
            strip.info["transparency"] = image.info["transparency"]
        yield strip
        y += count


def _palette(image: Image.Image) -> tuple[bytes, str] | None:
    palette = image.palette if image.mode in ("P", "PA") else None
    if palette is None:
        return None
    if getattr(palette, "rawmode", None):
        return palette.palette, palette.rawmode
    return palette.tobytes(), palette.mode


def decode_reduced(image: Image.Image, factor: int, to_rgb: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """The PNG shrunk by an integer `factor` (box average), decoded strip by strip; `to_rgb` converts each
    strip (e.g. compositing transparency) before it is shrunk."""
    width, height = image.size
    per_row = max(1, width * 4)
    rows = max(factor, (STRIP_BYTES // per_row) // factor * factor)
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    top = 0
    for strip in iter_strips(image, rows):
        small = to_rgb(strip).reduce(factor)
        out.paste(small, (0, top))
        top += small.height
    return out
