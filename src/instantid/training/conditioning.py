"""Frozen encoders at training time: captions through the pipeline's own `encode_prompt`, images
through the VAE. Both run without gradients."""

from __future__ import annotations

import torch

from ..models.architectures import SDXL


@torch.no_grad()
def encode_captions(pipe, family: str, captions: list[str], device) -> dict[str, torch.Tensor]:
    """{"text_states": [B, 77, D]} plus, for SDXL, {"pooled_text": [B, P]} (the UNet's added text embedding);
    FLUX: T5's states (padded to 512 tokens, as InfiniteYou's pipeline) and CLIP's pooled embedding."""
    if family == "flux":
        states, pooled, _ = pipe.encode_prompt(prompt=list(captions), prompt_2=None, device=device,
                                               num_images_per_prompt=1, max_sequence_length=512)
        return {"text_states": states, "pooled_text": pooled}
    if family == SDXL:
        states, _, pooled, _ = pipe.encode_prompt(prompt=list(captions), device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        return {"text_states": states, "pooled_text": pooled}
    states, _ = pipe.encode_prompt(list(captions), device, 1, False)
    return {"text_states": states}


@torch.no_grad()
def encode_images(vae, pixel_values: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> scaled latents. The posterior's mean, not a sample: deterministic, so cached and
    uncached training see identical latents (the SD VAEs' posterior spread is tiny anyway)."""
    latents = vae.encode(pixel_values.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((latents - shift) * vae.config.scaling_factor).float()


def added_conditions(family: str, text: dict[str, torch.Tensor], time_ids: torch.Tensor) -> dict | None:
    """SDXL's `added_cond_kwargs` (pooled text + size/crop time ids); None for SD1.5."""
    if family != SDXL:
        return None
    return {"text_embeds": text["pooled_text"], "time_ids": time_ids.to(text["pooled_text"])}
