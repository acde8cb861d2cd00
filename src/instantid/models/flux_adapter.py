"""InfiniteYou's face projection file (`image_proj_model.bin`): safe loading, shape checks against the
FLUX IdentityNet, and the Resampler built from it.

The file is `torch.save({"image_proj": <Resampler state dict>})`, the same perceiver Resampler (and key
names) as InstantID's `ip-adapter.bin`, so its sizes are read from the tensors (`adapter.resampler_shape`)
and it becomes diffusers' IP-Adapter-Plus projection through the same key renaming the SDXL adapter's
loader uses. The FLUX DiT has no image-adapter branch: a file with `ip_adapter` weights is an SDXL/SD1.5
InstantID adapter and is refused with that explanation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError
from .adapter import (
    _load_pickle_safely,
    check_adapter_values,
    resampler_shape,
    resampler_state_dict_to_diffusers,
    ResamplerShape,
)

IMAGE_PROJ = "image_proj"
_HEAD_DIM = 64


def load_image_proj_state_dict(source) -> dict[str, torch.Tensor]:
    """The Resampler state dict of `image_proj_model.bin` (or a .safetensors with `image_proj.` prefixes,
    or an already loaded `{"image_proj": ...}` dict), read with `weights_only=True` and checked."""
    return load_face_adapter_parts(source)[IMAGE_PROJ]


def load_face_adapter_parts(source) -> dict[str, dict[str, torch.Tensor]]:
    """`{"image_proj": Resampler}` of such a file, plus `{"ip_adapter": ...}` when it also holds the optional
    adapter branch inside the DiT that `instantid train --family flux --adapter_branch` writes
    (models/flux_face_adapter.py: keys `transformer_blocks.<i>.to_k_ip.weight` ...)."""
    from ..checks import check_input_file
    from .flux_face_adapter import is_flux_adapter_state_dict

    if isinstance(source, dict):
        state_dict, where = source, "the face projection state dict"
    else:
        path = check_input_file(source, "face projection checkpoint", error=CheckpointError)
        where = str(path)
        if path.suffix == ".safetensors":
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                flat = load_file(path)
            except SafetensorError as err:
                raise CheckpointError(f"{path}: not a readable safetensors file ({err}); download it again") from err
            state_dict: dict = {}
            for key, tensor in flat.items():
                part, _, rest = key.partition(".")
                state_dict.setdefault(part, {})[rest] = tensor
        else:
            state_dict = _load_pickle_safely(Path(path))
    if not isinstance(state_dict, dict) or IMAGE_PROJ not in state_dict:
        keys = sorted(map(str, state_dict))[:6] if isinstance(state_dict, dict) else type(state_dict).__name__
        raise CheckpointError(f"{where}: expected InfiniteYou's image_proj_model.bin layout, a dict with the key "
                              f"'image_proj' (the Resampler), got {keys}")
    if "ip_adapter" in state_dict and not is_flux_adapter_state_dict(state_dict["ip_adapter"]):
        raise CheckpointError(
            f"{where} is an SDXL/SD1.5 InstantID face adapter (it holds UNet 'ip_adapter' weights); the FLUX "
            "pipeline takes InfiniteYou's image_proj_model.bin (ByteDance/InfiniteYou, infu_flux_v1.0/<variant>/)")
    extra = sorted(set(state_dict) - {IMAGE_PROJ, "ip_adapter"})
    if extra:
        raise CheckpointError(f"{where}: unexpected parts {extra[:5]} beside 'image_proj'; this is not "
                              "InfiniteYou's image_proj_model.bin")
    parts = tuple(part for part in (IMAGE_PROJ, "ip_adapter") if part in state_dict)
    check_adapter_values(state_dict, where, parts=parts)
    resampler_shape(state_dict[IMAGE_PROJ])  # keys and ranks
    return {part: state_dict[part] for part in parts}


def check_fits_identitynet(image_proj: dict[str, torch.Tensor], token_width: int) -> ResamplerShape:
    """The Resampler's sizes, after checking its tokens are as wide as the IdentityNet's text input."""
    shape = resampler_shape(image_proj)
    if shape.output_dim != int(token_width):
        raise CheckpointError(
            f"the face projection outputs {shape.output_dim}-d tokens but this FLUX IdentityNet takes "
            f"{int(token_width)}-d ones (its joint_attention_dim); use the image_proj_model.bin released with "
            "the same InfuseNetModel (an SDXL InstantID adapter's tokens are 2048-d)")
    return shape


def build_face_projection(image_proj: dict[str, torch.Tensor], token_width: int,
                          dtype: torch.dtype | None = None) -> torch.nn.Module:
    """diffusers' `IPAdapterPlusImageProjection` with the sizes read from the weights, loaded strictly."""
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    shape = check_fits_identitynet(image_proj, token_width)
    ff_key = "layers.0.1.1.weight"
    if ff_key not in image_proj or image_proj[ff_key].shape[0] % shape.width:
        raise CheckpointError(f"the face projection's feed-forward ({ff_key}) is missing or not a multiple of its "
                              f"width {shape.width}; this is not an InfiniteYou Resampler")
    with torch.device("meta"):
        projection = IPAdapterPlusImageProjection(
            embed_dims=shape.embedding_dim, output_dims=shape.output_dim, hidden_dims=shape.width,
            depth=shape.depth, dim_head=_HEAD_DIM, heads=shape.heads, num_queries=shape.num_tokens,
            ffn_ratio=image_proj[ff_key].shape[0] // shape.width)
    try:
        projection.load_state_dict(resampler_state_dict_to_diffusers(image_proj), strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(f"the face projection's tensors do not fit a Resampler of the sizes its own shapes "
                              f"give ({shape}): {str(err).splitlines()[0][:300]}") from err
    projection.eval().requires_grad_(False)
    return projection.to(dtype) if dtype is not None else projection
