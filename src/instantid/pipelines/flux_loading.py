"""Build a ready FLUX InstantID pipeline (InfiniteYou-FLUX v1.0's weights) from names: Hub ids or local folders.

Defaults are the release: base `black-forest-labs/FLUX.1-dev` (gated: accept its licence on the Hub first),
IdentityNet and face projection from `ByteDance/InfiniteYou`, variant `aes_stage2` (or `sim_stage1`). A local
folder may be the repository root, a variant folder (holding `InfuseNetModel/` and `image_proj_model.bin`), or
the `InfuseNetModel/` folder / `image_proj_model.bin` file themselves.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointError, UsageError, WeightsNotFoundError
from . import hub
from .memory import DEFAULT_PROFILE

logger = logging.getLogger(__name__)

FLUX_BASE = "black-forest-labs/FLUX.1-dev"
INFINITEYOU_REPO = "ByteDance/InfiniteYou"
INFINITEYOU_VARIANTS = ("aes_stage2", "sim_stage1")
DEFAULT_VARIANT = "aes_stage2"
IDENTITYNET_FOLDER = "InfuseNetModel"
PROJECTION_FILE = "image_proj_model.bin"
# The diffusers folders of the base; skips FLUX.1-dev's 23 GB single-file copy at the repo's top level.
FLUX_BASE_PATTERNS = ["model_index.json", "*/*"]


def looks_like_flux_identitynet(spec) -> bool:
    """Whether `spec` is a local FLUX IdentityNet (InfuseNet) folder or a folder holding one, from config.json alone."""
    import json

    for folder in (Path(str(spec)).expanduser(), Path(str(spec)).expanduser() / IDENTITYNET_FOLDER):
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config.get("_class_name") == "FluxControlNetModel":
            return True
    return False


def variant_folder(variant: str) -> str:
    if variant not in INFINITEYOU_VARIANTS:
        raise UsageError(f"unknown InfiniteYou variant {variant!r}; choose one of {', '.join(INFINITEYOU_VARIANTS)}")
    return f"infu_flux_v1.0/{variant}"


def _local_candidates(spec: str, variant: str, name: str) -> Path | None:
    local = Path(spec).expanduser()
    for candidate in (local, local / name, local / variant_folder(variant) / name):
        if candidate.name == name and candidate.exists():
            return candidate
    return None


def resolve_flux_identitynet(spec: str = INFINITEYOU_REPO, variant: str = DEFAULT_VARIANT) -> Path:
    found = _local_candidates(spec, variant, IDENTITYNET_FOLDER)
    if found is not None:
        return found
    folder = f"{variant_folder(variant)}/{IDENTITYNET_FOLDER}"
    return hub.resolve_dir(spec, what="FLUX IdentityNet (InfuseNet)", hint="with --identitynet", subfolder=folder,
                           allow_patterns=[f"{folder}/*"])


def resolve_flux_projection(spec: str = INFINITEYOU_REPO, variant: str = DEFAULT_VARIANT) -> Path:
    local = Path(spec).expanduser()
    if local.is_file():
        return local
    found = _local_candidates(spec, variant, PROJECTION_FILE)
    if found is not None:
        return found
    return hub.resolve_file(spec, filename=f"{variant_folder(variant)}/{PROJECTION_FILE}",
                            what="FLUX face projection", hint="with --adapter")


def load_flux_identitynet(spec: str = INFINITEYOU_REPO, dtype=None, variant: str = DEFAULT_VARIANT):
    import torch
    from diffusers import FluxControlNetModel

    from ..checks import check_json_object

    path = resolve_flux_identitynet(spec, variant)
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(f"FLUX IdentityNet folder '{path}' has no config.json; pass InfiniteYou's "
                                   f"{IDENTITYNET_FOLDER}/ folder (a diffusers FluxControlNetModel)")
    config = check_json_object(path / "config.json", "FLUX IdentityNet config.json", error=CheckpointError)
    if config.get("_class_name") not in (None, FluxControlNetModel.__name__):
        raise CheckpointError(f"'{path}' holds a {config.get('_class_name')}, not a FluxControlNetModel: the FLUX "
                              "family needs InfiniteYou's InfuseNetModel (an SDXL IdentityNet is a ControlNetModel)")
    try:
        with _diffusers_own_deprecations_quiet():
            return FluxControlNetModel.from_pretrained(path, dtype=dtype or torch.float32)
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"FLUX IdentityNet in '{path}' could not be loaded: {err}") from err


@contextmanager
def _diffusers_own_deprecations_quiet():
    """diffusers' FLUX ControlNet builds its rotary embedding from a class diffusers itself deprecates; the warning
    is about diffusers' code, not the user's, so a front end does not show it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*FluxPosEmbed.*", category=FutureWarning)
        yield


def load_flux_base(spec: str, controlnet, dtype):
    from .flux import FluxInstantIDPipeline

    path = hub.resolve_dir(spec, what="FLUX base model", hint="with --base", allow_patterns=FLUX_BASE_PATTERNS)
    try:
        with _diffusers_own_deprecations_quiet():
            return FluxInstantIDPipeline.from_pretrained(path, controlnet=controlnet, dtype=dtype)
    except (OSError, ValueError) as err:
        raise WeightsNotFoundError(
            f"FLUX base model '{spec}' could not be loaded ({err.__class__.__name__}: {str(err)[:300]}). Pass a "
            "diffusers FLUX.1 folder (transformer, vae, text encoders, tokenizers, scheduler) or a Hub id, with --base"
        ) from err


def load_flux_pipeline(base: str = FLUX_BASE, identitynet: str = INFINITEYOU_REPO, adapter: str = INFINITEYOU_REPO,
                       *, variant: str = DEFAULT_VARIANT, device: str | None = None, dtype=None,
                       memory: str = DEFAULT_PROFILE, loras: list[tuple[str, float]] = (), vae_tiling: bool = False):
    """A FLUX InstantID pipeline with the face projection loaded, placed by memory profile `memory`
    (pipelines/memory.py). `loras` are (spec, scale) for the FLUX transformer (diffusers/peft).
    dtype: default bfloat16 on a GPU (InfiniteYou's), float32 on the CPU."""
    import torch

    from .loading_steps import default_device, load_loras
    from .memory import apply_memory_profile, memory_profile

    memory_profile(memory)  # a bad name fails before anything loads
    device = device or default_device()
    dtype = dtype or (torch.bfloat16 if device == "cuda" else torch.float32)
    # The small pieces first, so a missing file fails before the big download.
    projection = resolve_flux_projection(adapter, variant)
    controlnet = load_flux_identitynet(identitynet, dtype, variant)
    pipe = load_flux_base(base, controlnet, dtype)
    pipe.load_ip_adapter_instantid(projection)
    load_loras(pipe, list(loras))
    if vae_tiling:
        pipe.vae.enable_tiling()
    apply_memory_profile(pipe, memory, device)
    return pipe
