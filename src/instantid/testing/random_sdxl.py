"""Random-weight SDXL + IdentityNet + InstantID adapter components, built in code (no download).

``build_components("full", ...)`` gives the architecture of SDXL base 1.0 (CLIP ViT-L/14 and
OpenCLIP bigG text encoders, the SDXL VAE and UNet), the released IdentityNet and the released
face adapter shapes; ``build_components("small", ...)`` gives the tiny test architecture. The
weights are random, so only timings and memory mean anything. Used by `instantid bench` (and so
`benchmarks/gpu.sh`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from diffusers import AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from ..models.architectures import released_adapter_shapes
from .architectures import (
    TINY_VOCAB_SIZE,
    euler_scheduler_config,
    full_identitynet_config,
    full_sdxl_unet_config,
    identitynet_config_from_unet_config,
    tiny_clip_text_config,
    tiny_sdxl_unet_config,
    tiny_vae_config,
)
from .tiny import (
    TINY_CONDITIONING_CHANNELS,
    TINY_RESAMPLER_WIDTH,
    ZERO_CONV_STD,
    byte_level_clip_tokenizer,
    random_adapter_state_dict,
)

SIZES = ("full", "small")
# Ids of the byte-level tokenizer's <|startoftext|> / <|endoftext|>: the text encoders' pooling
# looks for eos_token_id, so it must be the one the tokenizer emits.
BYTE_TOKENIZER_BOS = TINY_VOCAB_SIZE - 2
BYTE_TOKENIZER_EOS = TINY_VOCAB_SIZE - 1
CLIP_VOCAB_SIZE = 49408  # holds every byte-level token id (< 514)


def clip_vit_l_text_config() -> dict:
    """SDXL's text_encoder: the text tower of OpenAI CLIP ViT-L/14."""
    return dict(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        projection_dim=768,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=BYTE_TOKENIZER_BOS,
        eos_token_id=BYTE_TOKENIZER_EOS,
        pad_token_id=1,
    )


def openclip_bigg_text_config() -> dict:
    """SDXL's text_encoder_2: the text tower of OpenCLIP ViT-bigG/14, with its projection."""
    return dict(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=20,
        max_position_embeddings=77,
        projection_dim=1280,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        bos_token_id=BYTE_TOKENIZER_BOS,
        eos_token_id=BYTE_TOKENIZER_EOS,
        pad_token_id=1,
    )


def sdxl_vae_config() -> dict:
    """AutoencoderKL of SDXL base 1.0 (8x downsampling; fp16 decode upcasts to fp32)."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[128, 256, 512, 512],
        layers_per_block=2,
        act_fn="silu",
        latent_channels=4,
        norm_num_groups=32,
        sample_size=1024,
        scaling_factor=0.13025,
        force_upcast=True,
    )


@dataclass
class Components:
    """Everything the benchmarked pipelines are assembled from (shared between them)."""

    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    text_encoder_2: CLIPTextModelWithProjection
    unet: UNet2DConditionModel
    controlnet: ControlNetModel
    adapter_state_dict: dict  # released ip-adapter.bin layout, random values
    build_seconds: dict[str, float] = field(default_factory=dict)

    def sdxl_kwargs(self) -> dict:
        """Constructor kwargs of StableDiffusionXLPipeline (each call gets a fresh scheduler)."""
        return dict(
            vae=self.vae,
            text_encoder=self.text_encoder,
            text_encoder_2=self.text_encoder_2,
            tokenizer=byte_level_clip_tokenizer(),
            # SDXL's second tokenizer pads with "!" instead of <|endoftext|>.
            tokenizer_2=byte_level_clip_tokenizer(pad_token="!"),
            unet=self.unet,
            scheduler=EulerDiscreteScheduler(**euler_scheduler_config()),
            add_watermarker=False,  # same work in every pipeline, whatever is installed
        )

    def parameter_counts(self) -> dict[str, int]:
        modules = {"unet": self.unet, "controlnet": self.controlnet, "vae": self.vae,
                   "text_encoder": self.text_encoder, "text_encoder_2": self.text_encoder_2}
        counts = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}
        counts["adapter"] = sum(t.numel() for part in self.adapter_state_dict.values() for t in part.values())
        return counts


def build_components(size: str, device: torch.device | str, dtype: torch.dtype, seed: int = 0) -> Components:
    """Random components of the `size` architecture, on `device` in `dtype`."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    device = torch.device(device)
    # A forked RNG: the same seed gives the same weights, and the caller's global RNG is left untouched.
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return _build_components(size == "full", device, dtype)


def _build_components(full: bool, device: torch.device, dtype: torch.dtype) -> Components:
    seconds: dict[str, float] = {}

    def timed(name, make):
        start = time.perf_counter()
        module = _on_device(make, device, dtype)
        _synchronize(device)
        seconds[name] = round(time.perf_counter() - start, 2)
        return module

    text_l = clip_vit_l_text_config() if full else tiny_clip_text_config()
    text_g = openclip_bigg_text_config() if full else tiny_clip_text_config()
    unet_config = full_sdxl_unet_config() if full else tiny_sdxl_unet_config()
    controlnet_config = (full_identitynet_config() if full else
                         identitynet_config_from_unet_config(unet_config, TINY_CONDITIONING_CHANNELS))

    unet = timed("unet", lambda: UNet2DConditionModel(**unet_config))
    controlnet = timed("controlnet", lambda: _identitynet(controlnet_config))
    vae = timed("vae", lambda: AutoencoderKL(**(sdxl_vae_config() if full else tiny_vae_config())))
    text_encoder = timed("text_encoder", lambda: CLIPTextModel(CLIPTextConfig(**text_l)))
    text_encoder_2 = timed("text_encoder_2", lambda: CLIPTextModelWithProjection(CLIPTextConfig(**text_g)))

    start = time.perf_counter()
    width = {} if full else {"resampler_width": TINY_RESAMPLER_WIDTH}
    adapter = random_adapter_state_dict(released_adapter_shapes(unet, **width))  # on CPU, fp32
    if device.type == "cpu" and dtype != torch.float32:  # halve what it holds until it is loaded
        adapter = {part: {k: v.to(dtype) for k, v in tensors.items()} for part, tensors in adapter.items()}
    seconds["adapter"] = round(time.perf_counter() - start, 2)
    return Components(vae, text_encoder, text_encoder_2, unet, controlnet, adapter, seconds)


def _identitynet(config: dict) -> ControlNetModel:
    """A ControlNet whose zero-initialised output convolutions hold small random values, so
    its residuals are not all zeros (as after training)."""
    controlnet = ControlNetModel(**config)
    with torch.no_grad():
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                     controlnet.controlnet_cond_embedding.conv_out]:
            for param in conv.parameters():
                param.normal_(0.0, ZERO_CONV_STD)
    return controlnet


def _on_device(make, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Build (and randomly initialise) directly on `device`: the full models' fp32 init on CPU
    would take minutes. Built in fp32, then cast, so initialisers never run in fp16; except
    bfloat16 on CPU, built as is: it has fp32's range, and an fp32 copy of the full UNet would
    need 10 GB of RAM on top."""
    build_dtype = dtype if (device.type == "cpu" and dtype == torch.bfloat16) else torch.float32
    with torch.device(device), _default_dtype(build_dtype):
        module = make()
    # nn.Module.to: diffusers' own .to() warns about fp32-pinned modules, of which these have none.
    return torch.nn.Module.to(module, dtype=dtype).eval().requires_grad_(False)


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
