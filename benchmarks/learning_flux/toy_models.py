"""The toy FLUX base and the FLUX InstantID pipeline around it.

The base is a small stock diffusers `FluxTransformer2DModel` working on 16x16 RGB pixels packed in 2x2
patches (64 image tokens of 12 channels), trained with rectified flow on captions, without a guidance
embedding (as FLUX.1-schnell). The "VAE" is the identity on pixels (`PixelVAE`): FLUX's IdentityNet takes
the VAE latent of the keypoint image, and here that latent is the keypoint image itself, so nothing but the
trained modules decides what IdentityNet sees. Captions come from benchmarks.learning's word-vector text
encoder; the pooled text vector FLUX wants is the mean of a caption's states.
Everything InstantID adds is the project's: `FluxInstantIDPipeline`, IdentityNet (`FluxControlNetModel`
from the DiT's blocks, training/flux.py), the Resampler and the optional adapter branch.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from diffusers import ConfigMixin, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, ModelMixin
from diffusers.configuration_utils import register_to_config

from instantid.pipelines.flux import FluxInstantIDPipeline

from benchmarks.learning.toy_models import TEXT_WIDTH

FACE_TOKENS = 4
RESAMPLER_WIDTH = 64


class PixelVAE(ModelMixin, ConfigMixin):
    """The identity "autoencoder": latents are the pixels (one level, so the pipeline's scale factor is 1)."""

    @register_to_config
    def __init__(self, latent_channels: int = 3, block_out_channels: tuple = (3,), scaling_factor: float = 1.0,
                 shift_factor: float = 0.0):
        super().__init__()
        self.register_buffer("anchor", torch.zeros(1), persistent=False)  # gives the model a device and dtype

    def encode(self, pixels: torch.Tensor, return_dict: bool = True):
        dist = SimpleNamespace(mode=lambda: pixels, sample=lambda generator=None: pixels, mean=pixels)
        return SimpleNamespace(latent_dist=dist) if return_dict else (dist,)

    def decode(self, latents: torch.Tensor, return_dict: bool = True, generator=None):
        return SimpleNamespace(sample=latents) if return_dict else (latents,)


def toy_transformer(seed: int) -> FluxTransformer2DModel:
    torch.manual_seed(seed)
    return FluxTransformer2DModel(patch_size=1, in_channels=12, num_layers=2, num_single_layers=2,
                                  attention_head_dim=16, num_attention_heads=4, joint_attention_dim=TEXT_WIDTH,
                                  pooled_projection_dim=TEXT_WIDTH, guidance_embeds=False, axes_dims_rope=(4, 6, 6))


def pooled(states: torch.Tensor) -> torch.Tensor:
    """FLUX's pooled text input for the toy: the mean of the caption's states."""
    return states.mean(dim=-2)


def flux_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)


def flux_instantid_pipeline(transformer, identitynet) -> FluxInstantIDPipeline:
    pipe = FluxInstantIDPipeline(scheduler=flux_scheduler(), vae=PixelVAE(), text_encoder=None, tokenizer=None,
                                 text_encoder_2=None, tokenizer_2=None, transformer=transformer, controlnet=identitynet)
    pipe.set_progress_bar_config(disable=True)
    return pipe
