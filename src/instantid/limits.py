"""Resource caps, in one place (the README's "Limits" lists them). Each is overridable for people with
the memory; each refusal says the cap and how to raise it.
"""

from __future__ import annotations

import os

from .errors import LimitError

# Output pixels (width x height) per model family: past these a step takes minutes and memory grows
# with the square of the latent tokens in self-attention. SDXL is trained at ~1 MP; 4 MP is already
# a lot. --tiny is a smoke test: random weights, the image is noise either way.
OUTPUT_PIXEL_CAPS = {"tiny": 512 * 512, "sd15": 1024 * 1024, "sdxl": 2048 * 2048, "flux": 2048 * 2048}
OUTPUT_PIXELS_ENV = "INSTANTID_MAX_OUTPUT_PIXELS"
# Reference photos per identity, and prompt length in characters (CLIP reads 77 tokens; the rest is
# dropped unless --prompt-weighting; 10000 characters is far past any real prompt).
MAX_REFERENCE_PHOTOS = 64
MAX_PROMPT_CHARS = 10_000
# Training resolution (pixel area = resolution^2).
MAX_TRAIN_RESOLUTION = 2048
# draw_kps canvas and keypoint coordinates.
MAX_KPS_CANVAS_PIXELS = 64_000_000
MAX_KPS_COORDINATE = 1_000_000

# Rough bytes of working memory per output pixel and image in a denoising step (activations of UNet +
# ControlNet with CFG in float32), and the weights; used for the estimate printed with a refusal.
_BYTES_PER_PIXEL = {"tiny": 600, "sd15": 20_000, "sdxl": 12_000, "flux": 16_000}  # tiny: 8.8 GB seen at 4096x4096
_WEIGHT_BYTES = {"tiny": 50e6, "sd15": 3e9, "sdxl": 10e9, "flux": 43e9}  # flux: InfiniteYou bf16, ~43 GB


def output_pixel_cap(family: str, override: int | None = None) -> int:
    """The cap for `family` ("tiny", "sd15", "sdxl"): `override`, else $INSTANTID_MAX_OUTPUT_PIXELS, else the table."""
    if override is not None:
        import numbers

        if isinstance(override, bool) or not isinstance(override, numbers.Integral) or override < 1:
            raise LimitError(f"the output pixel cap (--max-pixels / max_output_pixels) must be a positive whole "
                             f"number of pixels, got {override!r}")
        return int(override)
    env = os.environ.get(OUTPUT_PIXELS_ENV)
    if env:
        try:
            cap = int(float(env))
        except (ValueError, OverflowError):  # "abc", "nan", "inf"
            cap = 0
        if cap < 1:
            raise LimitError(f"${OUTPUT_PIXELS_ENV}={env!r} is not a positive number of pixels (e.g. 16777216)")
        return cap
    return OUTPUT_PIXEL_CAPS[family]


def estimate_memory_bytes(width: int, height: int, images: int, family: str) -> float:
    return _WEIGHT_BYTES[family] + _BYTES_PER_PIXEL[family] * width * height * max(1, images)


def check_output_size(width: int, height: int, images: int, family: str, override: int | None = None,
                      smaller: str = "--width/--height") -> None:
    """Refuse an output above the family's pixel cap, with the estimate and how to raise the cap: the one
    check of every entry (the CLI's generate, swap and multi before any model loads; every pipeline call).
    `smaller`: what to ask smaller, in the message."""
    cap = output_pixel_cap(family, override)
    if width * height > cap:
        need = estimate_memory_bytes(width, height, images, family) / 2**30
        raise LimitError(
            f"{width}x{height} ({width * height / 1e6:.1f} MP) is above the {cap / 1e6:.2f} MP output cap for "
            f"{family} models (about {need:.0f} GiB of memory and very slow steps); ask for a smaller {smaller}, "
            f"or raise the cap with --max-pixels N (max_output_pixels=N in Python) or ${OUTPUT_PIXELS_ENV}=N if you "
            "have the memory"
        )


def available_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_warning(width: int, height: int, images: int, family: str) -> str | None:
    """A warning when the estimate for a CPU run exceeds the memory available now (None when it fits)."""
    need, have = estimate_memory_bytes(width, height, images, family), available_memory_bytes()
    if have is None or need <= have:
        return None
    return (f"{width}x{height} x {images} image(s) needs about {need / 2**30:.1f} GiB on the CPU, but "
            f"{have / 2**30:.1f} GiB is available: it may be very slow or run out of memory")


def check_prompt(prompt: str | None, flag: str = "--prompt") -> None:
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise LimitError(f"{flag} is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS} "
                         "(CLIP reads about 77 tokens of it anyway)")


def check_photo_count(count: int, flag: str = "--face") -> None:
    if count > MAX_REFERENCE_PHOTOS:
        raise LimitError(f"{count} {flag} photos given; the limit is {MAX_REFERENCE_PHOTOS} (more add nothing to "
                         "the averaged embedding)")
