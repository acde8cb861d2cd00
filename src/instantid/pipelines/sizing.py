"""Output size rules."""

from __future__ import annotations

MAX_SIDE = 1280
SIZE_MULTIPLE = 64


def default_output_size(image_size: tuple[int, int], max_side: int = MAX_SIDE,
                        multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(width, height) for an output when none is given: the condition image's size, scaled down so
    the long side is at most `max_side`, both sides rounded down to multiples of `multiple`.

    The released code uses the image's size as is, so large photos made huge, out-of-memory outputs.
    """
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    scale = min(1.0, max_side / max(width, height))
    return (max(multiple, int(width * scale) // multiple * multiple),
            max(multiple, int(height * scale) // multiple * multiple))
