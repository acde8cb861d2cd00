"""Read a photo from a path, PIL image or array into upright RGB uint8, safely and memory-sanely.

Rules every backend relies on:
- EXIF orientation is applied, so coordinates refer to the photo as a viewer shows it.
- Transparency is composited onto WHITE (how viewers usually show a cut-out portrait); alpha is then
  dropped. Greyscale, palette, CMYK and 16-bit images become 8-bit RGB.
- Arrays are taken as RGB (not OpenCV's BGR): HxW, HxWx1, HxWx3 or HxWx4; uint8, uint16, or float
  in [0, 1].
- Our files are opened with our own, larger pixel limit (MAX_PIXELS) in place of Pillow's bomb check, so
  big-but-real photos (e.g. 20000x20000) load; Pillow's process-wide setting is never touched; `load_for_detection` decodes large JPEGs at
  1/2, 1/4 or 1/8 scale (Pillow's `draft`), and large PNGs strip by strip (png_strips.py), so they
  never sit in memory at full size. Other formats are decoded whole: above FULL_DECODE_MAX_PIXELS
  they are refused with the fix (convert to JPEG or PNG), which keeps analysing any accepted photo
  to about 1.5 GB of memory.
- `load_image` gives the whole photo (refused above FULL_DECODE_MAX_PIXELS: it is worked on at full size);
  `load_at_least` gives it at the reduced size something needs (an output, a training crop), decoded reduced
  as `load_for_detection` does.
- Only the raster formats people send are read (ALLOWED_FORMATS): never PostScript/EPS (Ghostscript),
  whatever the file's extension.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
from typing import Iterator, Union

import numpy as np
from PIL import Image, ImageOps

from ..checks import check_input_file
from ..errors import ImageReadError, LimitError

logger = logging.getLogger(__name__)

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray, bytes]  # bytes: an encoded file (a shard's sample)

# Refuse anything above this many pixels (1 gigapixel): a 20000x20000 photo (0.4 GP) still loads.
MAX_PIXELS = 1_000_000_000
# Long side that detection works on; larger photos are downscaled first (see fit_for_detection).
DEFAULT_DETECT_MAX_SIDE = 2048
# Formats read (Pillow names); camera JPEGs that open as MPO come through "JPEG".
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
# Photos decoded at full size before shrinking for detection (formats without reduced decoding, and
# interlaced PNGs) are refused above this: 100 MP is ~300 MB as RGB.
FULL_DECODE_MAX_PIXELS = 100_000_000
# PNGs above this are decoded strip by strip (smaller ones in one go: simpler and as fast).
STRIP_DECODE_ABOVE_PIXELS = 16_000_000
# What a broken file can raise inside Pillow's decoders and EXIF readers.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError, KeyError,
                  ZeroDivisionError, Image.DecompressionBombError)

_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_FLOAT_TOLERANCE = 1e-3  # float arrays may overshoot [0, 1] by rounding noise


def describe_source(source) -> str:
    """A short human name for an image source, for messages ("t1.jpg", "a 512x512 array")."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        return str(filename) if filename else f"the given {source.width}x{source.height} PIL image"
    if isinstance(source, np.ndarray):
        return f"the given {'x'.join(str(n) for n in source.shape)} array"
    if isinstance(source, bytes):
        return f"the given {len(source)} bytes"
    return f"an object of type {type(source).__name__}"


def load_image(source: ImageSource) -> np.ndarray:
    """The photo as upright RGB uint8, HxWx3, at full resolution. Raises ImageReadError; LimitError above
    FULL_DECODE_MAX_PIXELS (a photo worked on whole: use `load_at_least` where a reduced size will do)."""
    image, _ = _open_upright_rgb(source, fit_within=None, whole=True)
    return np.array(image, dtype=np.uint8)  # a writable copy


def load_at_least(source: ImageSource, long_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The photo as upright RGB uint8, decoded at a reduced size whose long side is still at least
    `long_side` where the format allows (JPEG: libjpeg's draft; large PNGs: strips), whole otherwise
    (refused above FULL_DECODE_MAX_PIXELS); and the full photo's upright (width, height).

    For what only needs a reduced size (an output, a training crop): resize the result to that size."""
    if long_side < 1:
        raise ValueError(f"long_side must be a positive number of pixels, got {long_side}")
    full = image_size(source)  # the header only
    image, _ = _open_upright_rgb(source, fit_within=long_side, whole=max(full) <= long_side)
    return np.array(image, dtype=np.uint8), full


def check_full_size(source: ImageSource) -> None:
    """LimitError when the photo is too big to work on at full size (FULL_DECODE_MAX_PIXELS); reads only
    the header of a file. Sources that are no image are left to the loader's own message."""
    if isinstance(source, np.ndarray) and source.ndim < 2:
        return
    if not isinstance(source, (str, os.PathLike, Image.Image, np.ndarray)):
        return
    _check_whole(image_size(source), describe_source(source))


def _check_whole(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width * height > FULL_DECODE_MAX_PIXELS:
        raise LimitError(
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} MP), above the "
            f"{FULL_DECODE_MAX_PIXELS / 1e6:.0f} MP limit for photos worked on at full size "
            "(instantid.face.image.FULL_DECODE_MAX_PIXELS); downscale it first")


def load_for_detection(source: ImageSource, max_side: int = DEFAULT_DETECT_MAX_SIDE) -> tuple[np.ndarray, float]:
    """The photo as upright RGB uint8 with its long side at most `max_side`, and the factor used.

    Coordinates found on the result map back to the full photo by dividing by the factor
    (1.0 when the photo was small enough already).
    """
    image, original_long_side = _open_upright_rgb(source, fit_within=max_side)
    small, _ = fit_for_detection(np.array(image, dtype=np.uint8), max_side)
    return small, max(small.shape[:2]) / original_long_side


def fit_for_detection(rgb: np.ndarray, max_side: int = DEFAULT_DETECT_MAX_SIDE) -> tuple[np.ndarray, float]:
    """Downscale `rgb` so its long side is at most `max_side`; returns (image, factor).

    factor = new long side / old long side (1.0 when nothing changed): divide coordinates found on
    the small image by it to get coordinates on `rgb`.
    """
    import cv2

    if max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    height, width = rgb.shape[:2]
    long_side = max(height, width)
    if long_side <= max_side:
        return rgb, 1.0
    factor = max_side / long_side
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    # INTER_AREA averages the pixels it drops, so small faces keep their structure.
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return small, max(small.shape[:2]) / long_side


def image_size(source: ImageSource) -> tuple[int, int]:
    """(width, height) of the photo as shown upright, without decoding its pixels where possible."""
    if isinstance(source, np.ndarray):
        return int(source.shape[1]), int(source.shape[0])
    if isinstance(source, Image.Image):
        return _upright_size(source)
    with _open_file(source) as image:
        return _upright_size(image)


def formats_read() -> str:
    return ", ".join(ALLOWED_FORMATS)


# --- internals -------------------------------------------------------------------------------


def _open_upright_rgb(source: ImageSource, fit_within: int | None, whole: bool = False) -> tuple[Image.Image, int]:
    """(upright RGB PIL image, long side of the full-resolution photo). `whole`: the photo is worked on at full
    size, refused above FULL_DECODE_MAX_PIXELS."""
    if isinstance(source, np.ndarray):
        if whole and source.ndim >= 2:
            _check_whole((source.shape[1], source.shape[0]), describe_source(source))
        image = _array_to_pil(source)
        return _to_rgb(image), max(image.size)
    if isinstance(source, Image.Image):
        _check_pixel_count(source.size, describe_source(source))
        if whole:
            _check_whole(source.size, describe_source(source))
        return _decode(source, describe_source(source), fit_within=None)
    if isinstance(source, (str, os.PathLike, bytes)):
        with _open_file(source) as image:
            if whole:
                _check_whole(image.size, describe_source(source))
            return _decode(image, describe_source(source), fit_within=fit_within)
    raise ImageReadError(
        f"cannot read an image from {describe_source(source)}; pass a file path, a PIL image or an "
        "RGB numpy array"
    )


@contextlib.contextmanager
def _open_file(path) -> Iterator[Image.Image]:
    """Image.open with the file checks, the allowed formats and our pixel limit; closed afterwards.
    `path` may be the bytes of an encoded image (read exactly as its file would be)."""
    name = describe_source(path)
    path = io.BytesIO(path) if isinstance(path, bytes) else check_input_file(path, "image file")
    try:
        image = _open_allowed_format(path)
    except Image.UnidentifiedImageError:
        raise ImageReadError(
            f"{name} is not an image in a format read here ({formats_read()}); save it as JPEG or PNG and try again"
        ) from None
    except _DECODE_ERRORS as err:
        if "too large" in str(err).lower():  # a PNG text/ICC chunk that inflates past Pillow's limit
            raise ImageReadError(f"{name} holds a metadata chunk (text or ICC profile) that inflates past the safety "
                                 "limit; re-export the photo without its metadata") from None
        raise ImageReadError(f"cannot open image file {name} ({type(err).__name__}: {str(err)[:200]}); the file is "
                             "damaged or truncated: re-export it as JPEG or PNG") from None
    with image:
        _check_pixel_count(image.size, name)
        yield image


def _decode(image: Image.Image, name: str, fit_within: int | None) -> tuple[Image.Image, int]:
    original_long_side = max(image.size)
    pixels = image.width * image.height
    try:
        if fit_within is not None and original_long_side > fit_within:
            reduced = _decode_reduced(image, name, fit_within)
            if reduced is not None:
                return reduced, original_long_side
            if pixels > FULL_DECODE_MAX_PIXELS:
                raise LimitError(
                    f"{name} is {image.width}x{image.height} ({pixels / 1e6:.0f} MP) in a form ({image.format}"
                    f"{', interlaced' if image.info.get('interlace') else ''}) that must be decoded whole, above the "
                    f"{FULL_DECODE_MAX_PIXELS / 1e6:.0f} MP limit for that; save it as JPEG or non-interlaced PNG, "
                    "or downscale it")
        image.load()
        return _to_rgb(_exif_upright(image, name), name), original_long_side
    except LimitError:
        raise
    except MemoryError:
        raise LimitError(f"not enough memory to decode {name} ({image.width}x{image.height}); downscale it") from None
    except _DECODE_ERRORS as err:
        raise ImageReadError(
            f"cannot decode image {name} ({err}); the file is truncated or corrupt: re-export or "
            "re-download it"
        ) from err


def _decode_reduced(image: Image.Image, name: str, fit_within: int) -> Image.Image | None:
    """The photo decoded at a reduced size still at least `fit_within` on its long side, upright RGB;
    None when the format has no reduced decoding (JPEG: libjpeg's draft; PNG: strips)."""
    from . import png_strips

    factor = fit_within / max(image.size)
    if image.format in ("JPEG", "MPO"):
        # Ask libjpeg for a reduced-scale decode that is still at least the fitted size.
        image.draft("RGB", (max(1, int(image.width * factor)), max(1, int(image.height * factor))))
        image.load()
        return _to_rgb(_exif_upright(image, name), name)
    if image.width * image.height > STRIP_DECODE_ABOVE_PIXELS and png_strips.can_stream(image):
        orientation = _orientation(image, name)
        reduced = png_strips.decode_reduced(image, max(1, int(1 / factor)), _to_rgb)
        return ImageOps.exif_transpose(_with_orientation(reduced, orientation))
    return None


def _orientation(image: Image.Image, name: str) -> int:
    try:
        if image.format == "PNG" and getattr(image, "tile", None):
            # Pillow's PNG getexif() decodes the whole image to look for an eXIf chunk after the pixels;
            # read only the one before them (where writers put it), so a huge PNG stays undecoded.
            raw = image.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
            return int(exif.get(0x0112, 1))
        return int(image.getexif().get(0x0112, 1))
    except _DECODE_ERRORS as err:
        logger.warning("%s: unreadable EXIF data (%s); using the photo as stored", name, err)
        return 1


def _with_orientation(image: Image.Image, orientation: int) -> Image.Image:
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.info["exif"] = exif.tobytes()
    return image


def _exif_upright(image: Image.Image, name: str) -> Image.Image:
    """exif_transpose, but damaged EXIF (e.g. in a truncated PNG) means "as stored", with a warning."""
    try:
        return ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as err:
        logger.warning("%s: unreadable EXIF data (%s); using the photo as stored", name, err)
        return image


def _to_rgb(image: Image.Image, name: str | None = None) -> Image.Image:
    """8-bit RGB; transparency composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(_high_depth_to_uint8(np.asarray(image), name)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _high_depth_to_uint8(values: np.ndarray, name: str | None = None) -> np.ndarray:
    """16-bit / 32-bit greyscale to 8 bits. Pillow's own convert would clip, not rescale."""
    _refuse_non_finite(values, name or "the image")
    values = values.astype(np.float64)
    peak = float(values.max()) if values.size else 0.0
    if peak <= 1.0 and values.dtype.kind == "f":
        scaled = values * 255.0  # float image in [0, 1]
    elif peak <= 255:
        scaled = values  # 8-bit values stored in a wide mode
    elif peak <= 65535:
        scaled = values / 257.0  # 16-bit: 65535 -> 255
    else:
        scaled = values * (255.0 / peak)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _refuse_non_finite(values: np.ndarray, name: str) -> None:
    """Float pixels that are NaN or infinite (an array, a float TIFF, a PIL "F" image) are refused, never read
    as black."""
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int(values.size - np.isfinite(values).sum())
        raise ImageReadError(f"{name} has {bad} NaN or infinite pixel value(s); fix or drop those pixels "
                             "(e.g. np.nan_to_num) before face analysis")


def _array_to_pil(array: np.ndarray) -> Image.Image:
    name = describe_source(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageReadError(f"{name} is not an image; expected HxW, HxWx3 (RGB) or HxWx4 (RGBA)")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(f"{name} is empty (no pixels); pass a photo")
    _check_pixel_count((array.shape[1], array.shape[0]), name)
    array = _array_to_uint8(array, name)
    return Image.fromarray(np.ascontiguousarray(array))  # L, RGB or RGBA from the shape


def _array_to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.rint(array / 257.0).astype(np.uint8)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype.kind == "f":
        _refuse_non_finite(array, name)
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        if not np.isfinite(array).all() or low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
            raise ImageReadError(
                f"{name} has float values in [{low:g}, {high:g}]; float images must lie in [0, 1] "
                "(divide 0-255 data by 255, or pass uint8)"
            )
        return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageReadError(f"{name} has dtype {array.dtype}; pass uint8, uint16 or float in [0, 1]")


def _check_pixel_count(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageReadError(
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} megapixels), above the "
            f"{MAX_PIXELS / 1e6:.0f}-megapixel limit that guards against decompression bombs; "
            "downscale the photo first"
        )


def _upright_size(image: Image.Image) -> tuple[int, int]:
    # EXIF orientations 5-8 rotate by 90 degrees, swapping width and height.
    orientation = _orientation(image, describe_source(image))
    return (image.height, image.width) if orientation in (5, 6, 7, 8) else image.size


def _open_allowed_format(path) -> Image.Image:
    """`Image.open(path, formats=ALLOWED_FORMATS)` without Pillow's decompression-bomb check, which reads a
    process-wide setting: our own limit (MAX_PIXELS, `_check_pixel_count`) replaces it for our opens only,
    and Pillow's guard stays on for everything else in the process. The plugins are asked in Pillow's way
    (each format's `accept` on the first bytes, then its opener); UnidentifiedImageError when none takes it."""
    Image.init()
    in_memory = isinstance(path, io.BytesIO)  # a shard's encoded bytes (see _open_file)
    fp = path if in_memory else open(path, "rb")
    filename = "" if in_memory else os.fspath(path)
    try:
        prefix = fp.read(16)
        for name in ALLOWED_FORMATS:
            factory, accept = Image.OPEN[name]
            if accept is not None and accept(prefix) is not True:
                continue
            fp.seek(0)
            try:
                image = factory(fp, filename)
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue  # not this format after all (as Image.open does)
            image._exclusive_fp = True  # closing the image closes the file
            return image
    except BaseException:
        fp.close()
        raise
    fp.close()
    raise Image.UnidentifiedImageError(f"cannot identify image file {filename or 'in memory'!r}")
