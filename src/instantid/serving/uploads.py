"""Uploaded photos: size, format, pixel count and decompression-bomb checks before anything reads them."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from .errors import ApiError
from .limits import Limits


def decode_base64(text, field: str) -> bytes:
    if not isinstance(text, str):
        raise ApiError(422, "invalid_base64", f"'{field}' must be a base64 string")
    if text.startswith("data:") and "," in text:  # accept data URLs as browsers make them
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid_base64", f"'{field}' is not valid base64")


def check_photo(data: bytes, field: str, limits: Limits) -> str:
    """Raise ApiError unless `data` is one whole, decodable photo within the limits. Returns its format."""
    from PIL import Image

    if not data:
        raise ApiError(422, "empty_file", f"'{field}' is an empty file")
    if len(data) > limits.max_file_bytes:
        raise ApiError(413, "file_too_large", f"'{field}' is {len(data)} bytes; the limit is {limits.max_file_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > limits.max_input_pixels:
                    raise ApiError(413, "too_many_pixels", f"'{field}' is {width}x{height}; the limit is "
                                   f"{limits.max_input_pixels} pixels")
                image.load()  # decode fully: truncated and corrupt files fail here, not in the worker
                return image.format or "unknown"
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ApiError(413, "decompression_bomb", f"'{field}' looks like a decompression bomb ({err})")
    except Image.UnidentifiedImageError:
        raise ApiError(422, "not_an_image", f"'{field}' is not an image Pillow can read (JPEG, PNG, WebP, ...)")
    except (OSError, ValueError, SyntaxError) as err:
        raise ApiError(422, "corrupt_image", f"'{field}' could not be decoded: {err}")
