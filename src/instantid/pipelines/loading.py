"""Build a ready InstantID pipeline from names: Hub ids, local folders or single checkpoint files."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import CheckpointError, WeightsNotFoundError
from ..models import hub

logger = logging.getLogger(__name__)

_SINGLE_FILE_SUFFIXES = {".safetensors", ".ckpt"}
# Files a diffusers SDXL base needs; skips the repo's duplicate single-file, ONNX and Flax weights.
_BASE_PATTERNS = ["model_index.json", "*/config.json", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors",
                  "*/model.safetensors"]
_BASE_PATTERNS_FP16 = ["model_index.json", "*/config.json", "*/*.json", "*/*.txt",
                       "*/diffusion_pytorch_model.fp16.safetensors", "*/model.fp16.safetensors"]


def default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def default_dtype(device: str) -> torch.dtype:
    return torch.float16 if device in ("cuda", "mps") else torch.float32


def load_identitynet(spec: str | Path = hub.RELEASED_REPO, dtype: torch.dtype = torch.float32):
    from diffusers import ControlNetModel

    path = hub.resolve_dir(spec, what="IdentityNet", hint="with --identitynet",
                           subfolder=hub.RELEASED_IDENTITYNET_SUBFOLDER,
                           allow_patterns=[f"{hub.RELEASED_IDENTITYNET_SUBFOLDER}/*"])
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(f"IdentityNet folder '{path}' has no config.json; pass the ControlNetModel folder")
    try:
        return ControlNetModel.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"IdentityNet in '{path}' could not be loaded: {err}") from err


def resolve_adapter(spec: str | Path = hub.RELEASED_REPO) -> Path:
    return hub.resolve_file(spec, filename=hub.RELEASED_ADAPTER_FILE, what="face adapter", hint="with --adapter")


def load_base(pipeline_class, spec: str | Path, controlnet, dtype: torch.dtype):
    """The base model from a single .safetensors/.ckpt file, a diffusers folder, or a Hub id."""
    local = Path(spec).expanduser()
    try:
        if local.suffix in _SINGLE_FILE_SUFFIXES:
            if not local.is_file():
                raise WeightsNotFoundError(f"base checkpoint '{spec}' does not exist; pass an existing file with --base")
            # Single files need the architecture's config; diffusers finds it in the cache or on the Hub.
            return pipeline_class.from_single_file(str(local), controlnet=controlnet, dtype=dtype)
        patterns = _BASE_PATTERNS_FP16 if dtype == torch.float16 else _BASE_PATTERNS
        path = hub.resolve_dir(spec, what="base model", hint="with --base", allow_patterns=patterns)
        variant = "fp16" if dtype == torch.float16 and any(path.glob("unet/*.fp16.safetensors")) else None
        return pipeline_class.from_pretrained(path, controlnet=controlnet, dtype=dtype, variant=variant)
    except (WeightsNotFoundError, CheckpointError):
        raise
    except (OSError, ValueError) as err:
        raise WeightsNotFoundError(
            f"base model '{spec}' could not be loaded ({err.__class__.__name__}: {str(err)[:300]}). Pass a diffusers "
            "SDXL folder, a single .safetensors file (with network or a cached config), or a Hub id, with --base"
        ) from err


def load_pipeline(base: str | Path = hub.DEFAULT_BASE, identitynet: str | Path = hub.RELEASED_REPO,
                  adapter: str | Path = hub.RELEASED_REPO, *, device: str | None = None,
                  dtype: torch.dtype | None = None, scheduler: str | None = None, offload: bool = False):
    """A StableDiffusionXLInstantIDPipeline with IdentityNet and the face adapter loaded.

    Defaults are the released weights (`InstantX/InstantID`) on SDXL base 1.0.
    """
    from .schedulers import set_scheduler
    from .sdxl import StableDiffusionXLInstantIDPipeline

    device = device or default_device()
    dtype = dtype or default_dtype(device)
    # Resolve the small pieces first, so a missing file fails before the big download.
    adapter_path = resolve_adapter(adapter)
    controlnet = load_identitynet(identitynet, dtype)
    pipe = load_base(StableDiffusionXLInstantIDPipeline, base, controlnet, dtype)
    pipe.load_ip_adapter_instantid(adapter_path)
    if scheduler:
        set_scheduler(pipe, scheduler)
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe
