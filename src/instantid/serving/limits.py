"""The service's limits, in one place (defaults here; `instantid serve` flags override some)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    queue_size: int = 16              # queued jobs; beyond this POST answers 429 with Retry-After
    max_body_bytes: int = 40 << 20    # whole request body
    max_file_bytes: int = 10 << 20    # one uploaded photo
    max_faces: int = 8                # face photos per request
    max_input_pixels: int = 40_000_000  # per photo (Pillow's bomb guard is set to this too)
    max_output_pixels: int = 2048 * 2048  # width x height of a generated image
    max_images: int = 4               # num_images_per_prompt cap (the parameter table allows more)
    max_prompt_chars: int = 2000
    result_ttl_s: float = 24 * 3600   # finished jobs and their files are deleted after this
    retry_after_s: int = 5            # the Retry-After header on 429
