"""The optional image-adapter branch inside the FLUX DiT: InstantID's decoupled face attention on FLUX.

InfiniteYou has no such branch (the identity reaches the DiT only through IdentityNet's residuals);
InstantID has both. This puts diffusers' own `FluxIPAdapterAttnProcessor` on every double-stream block
of the DiT (`set_attn_processor`, single-stream blocks keep theirs): the image tokens attend to the face
tokens through new `to_k_ip` / `to_v_ip` projections, added at a scale. The face tokens are the
Resampler's, the same ones IdentityNet reads, as InstantID's single Resampler feeds both branches.

On disk the branch's weights sit beside the Resampler in `image_proj_model.bin`, as InstantID keeps
them in `ip-adapter.bin`: `{"image_proj": ..., "ip_adapter": {"transformer_blocks.<i>.to_k_ip.weight",
... .bias, to_v_ip ...}}`. InfiniteYou's own loader reads only `image_proj`, so such a file still
loads there (IdentityNet only).
"""

from __future__ import annotations

import re

import torch

ADAPTER_PREFIX = "transformer_blocks."
_KEY = re.compile(r"transformer_blocks\.(\d+)\.(to_k_ip|to_v_ip)\.(weight|bias)")


def is_flux_adapter_state_dict(state_dict) -> bool:
    """True for the FLUX branch's keys (`transformer_blocks.<i>.to_k_ip.weight` ...), not the UNet's (`1.to_k_ip.weight`)."""
    return isinstance(state_dict, dict) and bool(state_dict) and all(_KEY.fullmatch(str(k)) for k in state_dict)


def _processor_names(transformer) -> list[str]:
    return [f"transformer_blocks.{i}.attn.processor" for i in range(len(transformer.transformer_blocks))]


def has_face_adapter(transformer) -> bool:
    from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor

    return any(isinstance(block.attn.processor, FluxIPAdapterAttnProcessor) for block in transformer.transformer_blocks)


def face_adapter_processors(transformer) -> list[torch.nn.Module]:
    return [block.attn.processor for block in transformer.transformer_blocks]


def fresh_face_adapter_state_dict(transformer) -> dict[str, torch.Tensor]:
    """New branch weights that leave the DiT exactly as it was: each to_k_ip a copy of its block's text key
    projection (add_k_proj, IP-Adapter's choice), each to_v_ip zero. Zero values because diffusers' FLUX
    processor adds the branch's output to the image stream as is, with no output projection or gate: copies
    of the text value projection there put full-size vectors into every double block at step 0 (measured in
    benchmarks/learning_flux: the frozen base's loss tripled and the branch never recovered), while zero
    values start the branch as a no-op that grows, as IdentityNet's zero projections do."""
    state = {}
    for i, block in enumerate(transformer.transformer_blocks):
        for part in ("weight", "bias"):
            key = getattr(block.attn.add_k_proj, part).detach().to("cpu", torch.float32, copy=True)
            state[f"{ADAPTER_PREFIX}{i}.to_k_ip.{part}"] = key
            state[f"{ADAPTER_PREFIX}{i}.to_v_ip.{part}"] = torch.zeros_like(
                getattr(block.attn.add_v_proj, part), dtype=torch.float32, device="cpu")
    return state


def install_face_adapter(transformer, num_tokens: int, state_dict: dict[str, torch.Tensor] | None = None,
                         scale: float = 1.0) -> None:
    """Give every double-stream block a `FluxIPAdapterAttnProcessor` reading `num_tokens` face tokens of the
    DiT's text width, loaded from `state_dict` (default: fresh_face_adapter_state_dict)."""
    from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor

    from ..errors import CheckpointError

    state_dict = fresh_face_adapter_state_dict(transformer) if state_dict is None else state_dict
    config = transformer.config
    width = config.num_attention_heads * config.attention_head_dim
    processors = dict(transformer.attn_processors)
    weight = transformer.transformer_blocks[0].attn.add_k_proj.weight
    for i, name in enumerate(_processor_names(transformer)):
        processor = FluxIPAdapterAttnProcessor(hidden_size=width, cross_attention_dim=config.joint_attention_dim,
                                               num_tokens=(int(num_tokens),), scale=float(scale))
        block_state = {}
        for ip_name in ("to_k_ip", "to_v_ip"):
            for part in ("weight", "bias"):
                key = f"{ADAPTER_PREFIX}{i}.{ip_name}.{part}"
                if key not in state_dict:
                    raise CheckpointError(f"the FLUX face adapter has no {key}: it was made for a DiT with fewer "
                                          f"double-stream blocks than this one ({len(transformer.transformer_blocks)})")
                block_state[f"{ip_name}.0.{part}"] = state_dict[key]
        try:
            processor.load_state_dict(block_state, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"the FLUX face adapter's block {i} does not fit this DiT (width {width}, text "
                                  f"width {config.joint_attention_dim}): {str(err).splitlines()[0][:200]}") from err
        processors[name] = processor.to(device=weight.device, dtype=weight.dtype)
    extra = {int(_KEY.fullmatch(k).group(1)) for k in state_dict} - set(range(len(transformer.transformer_blocks)))
    if extra:
        raise CheckpointError(f"the FLUX face adapter has weights for double-stream blocks {sorted(extra)[:5]} this "
                              "DiT does not have: it was made for another base")
    transformer.set_attn_processor(processors)


def remove_face_adapter(transformer) -> None:
    """Back to the stock processors on the double-stream blocks (the DiT without the branch)."""
    from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

    processors = dict(transformer.attn_processors)
    for name in _processor_names(transformer):
        processors[name] = FluxAttnProcessor()
    transformer.set_attn_processor(processors)


def face_adapter_state_dict(transformer) -> dict[str, torch.Tensor]:
    """The branch's weights in the file layout (fp32, CPU, contiguous)."""
    state = {}
    for i, processor in enumerate(face_adapter_processors(transformer)):
        for ip_name in ("to_k_ip", "to_v_ip"):
            layer = getattr(processor, ip_name)[0]
            for part in ("weight", "bias"):
                state[f"{ADAPTER_PREFIX}{i}.{ip_name}.{part}"] = getattr(layer, part).detach().to(
                    "cpu", torch.float32).contiguous().clone()
    return state


def copy_face_adapter_(transformer, state_dict: dict[str, torch.Tensor]) -> None:
    """Overwrite the installed branch's weights in place (the optimizer keeps its parameters)."""
    with torch.no_grad():
        for i, processor in enumerate(face_adapter_processors(transformer)):
            for ip_name in ("to_k_ip", "to_v_ip"):
                layer = getattr(processor, ip_name)[0]
                for part in ("weight", "bias"):
                    getattr(layer, part).copy_(state_dict[f"{ADAPTER_PREFIX}{i}.{ip_name}.{part}"])


def set_face_adapter_scale(transformer, scale: float) -> None:
    for processor in face_adapter_processors(transformer):
        processor.scale = [float(scale)] * len(processor.scale)


def face_adapter_kwargs(tokens: torch.Tensor) -> dict:
    """The DiT's `joint_attention_kwargs` that hand the face tokens to the branch."""
    return {"ip_hidden_states": [tokens]}
