"""Memory profiles: the levers InfiniteYou documents for fitting FLUX on common GPUs, through standard
libraries (diffusers' model and group offload; 8-bit / fp8 weights through optimum-quanto, the library
InfiniteYou's own `--quantize_8bit` uses; VAE tiling is a separate switch). torchao would do the same, but
importing it (diffusers does when it is installed) prints kernel-loading failures on CPU-only installs.

| profile          | what                                                          | their figure (bf16, FLUX.1-dev) |
| full             | every model on the GPU                                        | ~43 GB                          |
| offload          | diffusers model CPU offload: one model on the GPU at a time   | ~30 GB (`--cpu_offload`)        |
| group-offload    | diffusers group offload: DiT/IdentityNet blocks streamed in   | none (lower than offload)       |
| 8bit             | int8 weights (quanto) for the DiT, IdentityNet and T5         | ~24 GB (`--quantize_8bit`)      |
| fp8              | float8 (e4m3) weights (quanto) for the same three             | none                            |
| 8bit-offload     | both                                                          | ~16 GB                          |

Quantized weights are computed with in the pipeline's dtype (weight-only quantization); the Resampler, CLIP
and the VAE stay as they are (small). Profiles are applied once, after loading (the declared components
are in place by then).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import UsageError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryProfile:
    name: str
    offload: str | None  # None, "model" or "group"
    weights: str | None  # None, "int8" or "fp8"
    their_gb: float | None  # InfiniteYou's documented peak VRAM for the matching setting
    summary: str


PROFILES = {p.name: p for p in (
    MemoryProfile("full", None, None, 43, "every model on the GPU"),
    MemoryProfile("offload", "model", None, 30, "diffusers model CPU offload (one model on the GPU at a time)"),
    MemoryProfile("group-offload", "group", None, None, "diffusers group offload (blocks streamed to the GPU)"),
    MemoryProfile("8bit", None, "int8", 24, "int8 weights (optimum-quanto) for the DiT, IdentityNet and T5"),
    MemoryProfile("fp8", None, "fp8", None, "float8 weights (optimum-quanto) for the DiT, IdentityNet and T5"),
    MemoryProfile("8bit-offload", "model", "int8", 16, "int8 weights and model CPU offload"),
)}
DEFAULT_PROFILE = "full"
# The components whose weights a quantized profile stores in 8 bits (InfiniteYou's --quantize_8bit set).
QUANTIZED_COMPONENTS = ("transformer", "controlnet", "text_encoder_2")


def memory_profile(name: str) -> MemoryProfile:
    if name not in PROFILES:
        raise UsageError(f"unknown memory profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


def quantize_weights(pipe, kind: str) -> None:
    """Store the big models' Linear weights in int8 or float8 (weight-only: computed in the pipeline's dtype)."""
    try:
        from optimum.quanto import freeze, qfloat8, qint8, quantize
    except ImportError as err:
        raise UsageError(f"the {kind} memory profiles need optimum-quanto: pip install 'instantid[quantization]'") from err
    for name in QUANTIZED_COMPONENTS:
        module = getattr(pipe, name, None)
        if module is not None:
            quantize(module, weights=qint8 if kind == "int8" else qfloat8)
            freeze(module)


def apply_memory_profile(pipe, name: str, device: str) -> None:
    """Put the pipeline on `device` the way profile `name` says (instead of `pipe.to(device)`)."""
    profile = memory_profile(name)
    if profile.weights:
        quantize_weights(pipe, profile.weights)
    if profile.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif profile.offload == "group":
        import torch

        pipe.enable_group_offload(onload_device=torch.device(device), offload_device=torch.device("cpu"),
                                  offload_type="leaf_level")
    else:
        pipe.to(device)
    if profile.offload and device == "cpu":
        logger.warning("the %s profile moves models between GPU and CPU; on the CPU it only costs time", name)
