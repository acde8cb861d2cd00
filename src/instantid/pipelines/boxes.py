"""Region boxes (x1, y1, x2, y2 in output pixels) checked without any model or torch: front ends refuse a bad
--box in milliseconds, before anything loads (face_region.py snaps and masks them in the pipeline call)."""

from __future__ import annotations

import math
from typing import Sequence

from ..errors import RegionError

Box = tuple[float, float, float, float]


def check_box(box, size: tuple[int, int], what: str = "region") -> Box:
    """`box` as four floats, refused with a clear message when malformed, empty or outside the image."""
    width, height = size
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise RegionError(f"{what} must be a box x1,y1,x2,y2 of four numbers, got {box!r}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise RegionError(f"{what} {box!r} has non-finite coordinates")
    if x2 <= x1 or y2 <= y1:
        raise RegionError(f"{what} ({x1:g},{y1:g},{x2:g},{y2:g}) is empty: x2 must exceed x1 and y2 must exceed y1")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise RegionError(f"{what} ({x1:g},{y1:g},{x2:g},{y2:g}) lies outside the {width}x{height} image; "
                          f"keep 0 <= x1 < x2 <= {width} and 0 <= y1 < y2 <= {height}")
    return x1, y1, x2, y2


def check_boxes(boxes: Sequence, count: int, size: tuple[int, int] | None) -> list[Box]:
    """`count` boxes (output pixels) each non-empty, finite and inside an output of `size`; RegionError
    otherwise. Needs no model: front ends call it before anything loads."""
    if size is None:
        raise RegionError("boxes are in output pixels: give the output size (width, height) too")
    boxes = list(boxes)
    if len(boxes) != count:
        raise RegionError(f"{count} face photos but {len(boxes)} regions; give one region per face photo")
    return [check_box(box, size, what=f"region {i}") for i, box in enumerate(boxes)]
