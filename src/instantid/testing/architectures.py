"""Configs of the test and benchmark models: the tiny SDXL/SD1.5 components of the parity fixture and
the full-size SDXL base 1.0 + released IdentityNet architecture (random weights).

The tiny SDXL configs reproduce ``shared/fixtures/official-parity/base`` (made by the released code on
tiny random components); the full-size configs are those of SDXL base 1.0 and of the released
IdentityNet (``InstantX/InstantID/ControlNetModel``). Only values that differ from diffusers' defaults
are spelled out.
"""

from __future__ import annotations

import inspect

from ..models.architectures import IDENTITYNET_CONDITIONING_CHANNELS, RELEASED_CONDITIONING_CHANNELS, SDXL_NUM_TIME_IDS

# The two tiny CLIP text encoders of the fixture (same config for both).
TINY_TEXT_HIDDEN = 32
TINY_TEXT_PROJECTION = 32
TINY_ADDITION_TIME_EMBED_DIM = 8
# Byte-level vocabulary: 256 byte symbols, the same 256 with the end-of-word marker, then
# <|startoftext|> and <|endoftext|>.
TINY_VOCAB_SIZE = 2 * 256 + 2


def tiny_clip_text_config() -> dict:
    """CLIPTextConfig kwargs of the fixture's text encoders (both of them)."""
    return dict(
        vocab_size=TINY_VOCAB_SIZE,
        hidden_size=TINY_TEXT_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=5,
        max_position_embeddings=77,
        projection_dim=TINY_TEXT_PROJECTION,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        bos_token_id=TINY_VOCAB_SIZE - 2,
        eos_token_id=TINY_VOCAB_SIZE - 1,
        pad_token_id=1,
    )


def tiny_sdxl_unet_config() -> dict:
    """The fixture's UNet: two levels, attention only in the deeper one (like SDXL's first level)."""
    return dict(
        sample_size=16,
        block_out_channels=[32, 64],
        layers_per_block=2,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
        mid_block_type="UNetMidBlock2DCrossAttn",
        transformer_layers_per_block=[1, 2],
        attention_head_dim=[2, 4],
        norm_num_groups=8,
        use_linear_projection=True,
        # SDXL feeds both encoders' hidden states side by side.
        cross_attention_dim=2 * TINY_TEXT_HIDDEN,
        addition_embed_type="text_time",
        addition_time_embed_dim=TINY_ADDITION_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=SDXL_NUM_TIME_IDS * TINY_ADDITION_TIME_EMBED_DIM
        + TINY_TEXT_PROJECTION,
    )


def tiny_sd15_unet_config() -> dict:
    """A tiny SD1.5-shaped UNet: attention in the shallow levels, none in the deepest (as SD1.5),
    conv proj_in/proj_out, one text encoder whose hidden size is the cross-attention width
    (768 in SD1.5, 32 here), no added text/time embedding."""
    return dict(
        sample_size=16,
        block_out_channels=[32, 64],
        layers_per_block=2,
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        mid_block_type="UNetMidBlock2DCrossAttn",
        attention_head_dim=[2, 4],
        norm_num_groups=8,
        use_linear_projection=False,
        cross_attention_dim=TINY_TEXT_HIDDEN,
    )


def tiny_vae_config() -> dict:
    """The fixture's VAE: two levels, so latents are 1/2 of the image size (real SD VAEs have
    four levels: 1/8)."""
    return dict(
        sample_size=64,
        block_out_channels=[16, 32],
        layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=8,
    )


def euler_scheduler_config() -> dict:
    """EulerDiscreteScheduler of SDXL base (identical betas to SD1.5), as in the fixture."""
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        steps_offset=1,
        timestep_spacing="leading",
        interpolation_type="linear",
    )


def full_sdxl_unet_config() -> dict:
    """UNet2DConditionModel kwargs of SDXL base 1.0 (no weights; use on the meta device)."""
    return dict(
        sample_size=128,
        block_out_channels=[320, 640, 1280],
        layers_per_block=2,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        mid_block_type="UNetMidBlock2DCrossAttn",
        transformer_layers_per_block=[1, 2, 10],
        attention_head_dim=[5, 10, 20],
        norm_num_groups=32,
        use_linear_projection=True,
        cross_attention_dim=2048,  # CLIP ViT-L (768) + OpenCLIP bigG (1280)
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=SDXL_NUM_TIME_IDS * 256 + 1280,  # 2816
    )


def identitynet_config_from_unet_config(
    unet_config: dict, conditioning_embedding_out_channels: list[int]
) -> dict:
    """ControlNetModel kwargs for a ControlNet shaped like ``unet_config`` (what
    ``ControlNetModel.from_unet`` does, without building the UNet)."""
    from diffusers import ControlNetModel

    accepted = inspect.signature(ControlNetModel.__init__).parameters
    config = {k: v for k, v in unet_config.items() if k in accepted}
    config.update(
        conditioning_channels=IDENTITYNET_CONDITIONING_CHANNELS,
        conditioning_embedding_out_channels=list(conditioning_embedding_out_channels),
        controlnet_conditioning_channel_order="rgb",
    )
    return config


def full_identitynet_config() -> dict:
    """ControlNetModel kwargs of the released IdentityNet (``ControlNetModel/config.json``)."""
    return identitynet_config_from_unet_config(full_sdxl_unet_config(), RELEASED_CONDITIONING_CHANNELS)


