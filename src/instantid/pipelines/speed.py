"""Speed and memory options, applied the same way to every compared pipeline.

Each option is one diffusers/torch switch: attention kernel (SDPA or eager), channels-last memory
layout, torch.compile of the UNet and ControlNet, model CPU offload, VAE tiling and slicing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads with the pipelines; the CLI reads ATTENTION_CHOICES without it
    import torch

logger = logging.getLogger(__name__)

ATTENTION_CHOICES = ("sdpa", "eager")


@dataclass(frozen=True)
class SpeedOptions:
    attention: str = "sdpa"  # diffusers' default AttnProcessor2_0; "eager" = the pre-2.0 matmul/softmax path
    channels_last: bool = False
    compile: bool = False
    offload: bool = False  # enable_model_cpu_offload; on a CPU device it only adds the hooks' cost
    vae_tiling: bool = False
    vae_slicing: bool = False

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention must be one of {ATTENTION_CHOICES}, got {self.attention!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def apply_to_modules(options: SpeedOptions, *, unet, controlnet, vae) -> None:
    """Module-level options, once, after the face adapter is loaded (processors must exist).
    `controlnet`: one ControlNet module or a list of them."""
    controlnets = list(controlnet) if isinstance(controlnet, (list, tuple)) else [controlnet]
    if options.attention == "eager":
        for module in (unet, *controlnets, vae):
            use_eager_attention(module)
    if options.channels_last:
        import torch

        for module in (unet, *controlnets, vae):
            module.to(memory_format=torch.channels_last)
    if options.vae_tiling:
        vae.enable_tiling()
    if options.vae_slicing:
        vae.enable_slicing()
    if options.compile:
        # nn.Module.compile keeps the module's class and attributes (pipelines read unet.config).
        unet.compile()
        for module in controlnets:
            # Each ControlNet on its own (InstantID's compile the network, not their per-step decisions).
            for net in getattr(module, "nets", [module]):
                net.compile()


def use_eager_attention(module: torch.nn.Module) -> None:
    """Replace SDPA processors by their eager twins in every diffusers Attention of `module`,
    face-adapter processors included (their weights and scales carried over)."""
    from diffusers.models.attention_processor import (
        Attention,
        AttnProcessor,
        AttnProcessor2_0,
        IPAdapterAttnProcessor,
        IPAdapterAttnProcessor2_0,
    )

    from ..models.adapter_scales import call_scaled_class

    for attention in (m for m in module.modules() if isinstance(m, Attention)):
        processor = attention.processor
        if isinstance(processor, IPAdapterAttnProcessor2_0):
            eager = call_scaled_class(IPAdapterAttnProcessor)(processor.hidden_size, processor.cross_attention_dim,
                                                              processor.num_tokens, processor.scale)
            eager.load_state_dict(processor.state_dict())
            first = next(processor.parameters())
            attention.set_processor(eager.to(device=first.device, dtype=first.dtype))
        elif isinstance(processor, AttnProcessor2_0):
            attention.set_processor(AttnProcessor())


def enable_offload(pipe, device: torch.device) -> None:
    """Model CPU offload for `pipe`. The compared pipelines share modules, so this is called
    before each of its runs: enabling it re-hooks the shared modules for this pipeline."""
    pipe.enable_model_cpu_offload(device=device)
