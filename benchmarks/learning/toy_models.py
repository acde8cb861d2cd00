"""The toy base model and the InstantID pipeline around it.

The base is a small stock diffusers `UNet2DConditionModel` working directly on 16x16 RGB pixels
(v-prediction, cosine noise schedule). A one-level VAE is carried only so the stock pipeline's latent
grid equals the pixel grid (it is never run: sampling returns `output_type="latent"`). Captions go
through a frozen random word-embedding "text encoder" (the world has only seven words).
Everything InstantID adds is the project's own: `StableDiffusionInstantIDPipeline`, the face adapter
(Resampler + decoupled cross-attention) and IdentityNet (`ControlNetModel.from_unet`).
"""

from __future__ import annotations

import torch

from instantid.pipelines.sd15 import StableDiffusionInstantIDPipeline
from instantid.training.model import load_identitynet

from .world import COLOURS, SIZE, caption

TEXT_WIDTH = 64  # the UNet's cross-attention width: text tokens and face tokens
FACE_TOKENS = 4
RESAMPLER_WIDTH = 64
_VOCABULARY = ("<pad>", "a", "face", "on", "background", *COLOURS)
_TEXT_LENGTH = 6


class ToyTextEncoder:
    """Caption -> [6, 64] states: fixed random word vectors plus position vectors (never trained)."""

    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.words = torch.randn(len(_VOCABULARY), TEXT_WIDTH, generator=generator)
        self.positions = torch.randn(_TEXT_LENGTH, TEXT_WIDTH, generator=generator) * 0.5

    def __call__(self, captions: list[str]) -> torch.Tensor:
        ids = torch.zeros(len(captions), _TEXT_LENGTH, dtype=torch.long)
        for row, text in enumerate(captions):
            tokens = [_VOCABULARY.index(word) for word in text.split()][:_TEXT_LENGTH]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return self.words[ids] + self.positions

    def colour_states(self) -> dict[str, torch.Tensor]:
        return {colour: self([caption(colour)])[0] for colour in COLOURS}


def toy_unet(seed: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH, attention_head_dim=8, norm_num_groups=16)


def noise_scheduler_config() -> dict:
    return {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction",
            "clip_sample": False}


def training_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**noise_scheduler_config())


def _pixel_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=3, block_out_channels=(8,),
                         down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                         norm_num_groups=8, layers_per_block=1)


def instantid_pipeline(unet) -> StableDiffusionInstantIDPipeline:
    """The project's SD1.5-family InstantID pipeline on the toy base, with a fresh IdentityNet copied
    from the base UNet (the keypoint encoder gets one level: latents are pixels)."""
    from diffusers import DDIMScheduler

    vae = _pixel_vae()
    identitynet = load_identitynet(None, unet, vae)
    scheduler = DDIMScheduler(**noise_scheduler_config(), set_alpha_to_one=False, timestep_spacing="trailing")
    pipe = StableDiffusionInstantIDPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=unet, controlnet=identitynet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
