"""The trainable InstantID on a frozen base, built from the inference pieces.

The face adapter is loaded into the UNet by the same call inference uses
(`pipe.load_ip_adapter_instantid`), so its Resampler is diffusers' `unet.encoder_hid_proj` and its
`to_k_ip`/`to_v_ip` live in diffusers' IP-Adapter attention processors; IdentityNet is the pipeline's
`IdentityNetModel`, given the face tokens as its encoder states, as in the pipeline. Only those
train; the UNet's own weights, the VAE and the text encoders are frozen.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.adapter import AdapterStateDict, load_adapter_state_dict, resampler_shape
from ..models.architectures import (
    RELEASED_CONDITIONING_CHANNELS,
    RESAMPLER_NUM_TOKENS,
    SDXL,
    cross_attention_modules,
    embedding_size_problem,
    family_of_config,
    released_adapter_shapes,
)
from ..models.face_paths import FLUX
from .errors import TrainingConfigError

logger = logging.getLogger(__name__)



class InstantIDTrainingModel(torch.nn.Module):
    """UNet (frozen, holding the trainable face adapter) + IdentityNet as one module, so DDP and
    DeepSpeed see a single model. `forward` is InstantID's noise prediction, as in the pipeline.
    With `identitynet=None` the face adapter alone conditions the UNet (the paper's ablation)."""

    def __init__(self, unet, identitynet):
        super().__init__()
        self.unet = unet
        self.identitynet = identitynet

    @property
    def face_projection(self) -> torch.nn.Module:
        return self.unet.encoder_hid_proj.image_projection_layers[0]

    def forward(self, noisy_latents, timesteps, text_states, face_embeddings, kps_images, added_cond=None):
        """face_embeddings [B, E] raw; kps_images [B, 3, H, W] in [0, 1]; added_cond: SDXL's pooled text + time ids."""
        # 1-2. IdentityNet cross-attends to the face tokens instead of the text (the tokens are computed here
        # once for it; the UNet's IP-Adapter path projects the same embedding itself)
        down_residuals = mid_residual = None
        if self.identitynet is not None:
            face_tokens = self.face_projection(face_embeddings[:, None])
            down_residuals, mid_residual = self.identitynet(
                noisy_latents, timesteps, encoder_hidden_states=face_tokens.to(text_states),
                controlnet_cond=kps_images, added_cond_kwargs=added_cond, return_dict=False)
        # 3. UNet: text cross-attention + decoupled face cross-attention, plus IdentityNet's residuals
        unet_cond = {**(added_cond or {}), "image_embeds": [face_embeddings[:, None, None]]}
        return self.unet(noisy_latents, timesteps, encoder_hidden_states=text_states, added_cond_kwargs=unet_cond,
                         down_block_additional_residuals=down_residuals, mid_block_additional_residual=mid_residual,
                         return_dict=False)[0]


def trainable_modules(unet, identitynet) -> list[torch.nn.Module]:
    """What InstantID trains: the Resampler, every to_k_ip/to_v_ip, and IdentityNet."""
    modules = [unet.encoder_hid_proj, identitynet]
    for attn in cross_attention_modules(unet).values():
        modules += [attn.processor.to_k_ip, attn.processor.to_v_ip]
    return modules


def mark_trainable(unet, identitynet, frozen: list[torch.nn.Module]) -> None:
    for module in [unet, *frozen]:
        module.requires_grad_(False)
    for module in trainable_modules(unet, identitynet):
        module.requires_grad_(True)
        module.train()


@dataclass
class TrainingComponents:
    family: str  # SDXL or SD15 (FLUX: training/flux.py's FluxTrainingComponents)
    pipe: object  # the InstantID inference pipeline holding every module below
    model: InstantIDTrainingModel
    noise_scheduler: object
    weight_dtype: torch.dtype  # of the frozen weights

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def identitynet(self):
        return self.pipe.controlnet

    @property
    def vae(self):
        return self.pipe.vae

    def text_encoders(self) -> list:
        return [m for m in (self.pipe.text_encoder, getattr(self.pipe, "text_encoder_2", None)) if m is not None]


def load_components(args, embedding_dim: int, weight_dtype: torch.dtype, device):
    """Base model (a diffusers folder or Hub id), IdentityNet and face adapter, ready to train on `device`:
    TrainingComponents, or for a FLUX base the family's own (training/flux.py)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    base_dir = resolve_base(args.pretrained_model_name_or_path)
    family = detect_family(base_dir, getattr(args, "family", "auto"))
    if family == FLUX:
        from .flux import load_flux_components

        return load_flux_components(args, base_dir, embedding_dim, weight_dtype, device)
    if getattr(args, "adapter_branch", False):
        raise TrainingConfigError(f"--adapter_branch is for FLUX bases; {base_dir} is {family} (its adapter always trains)")
    unet = UNet2DConditionModel.from_pretrained(base_dir, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(base_dir, subfolder="vae")
    identitynet = load_identitynet(args.identitynet, unet, vae)
    pipe = pipeline_class(family).from_pretrained(base_dir, unet=unet, vae=vae, controlnet=identitynet)
    adapter = load_adapter_state_dict(args.adapter) if args.adapter else None
    return assemble_components(pipe, family, embedding_dim, weight_dtype, device, adapter=adapter, seed=args.seed,
                               resampler_width=args.resampler_width, num_tokens=args.num_tokens or RESAMPLER_NUM_TOKENS,
                               gradient_checkpointing=args.gradient_checkpointing)


def assemble_components(pipe, family: str, embedding_dim: int, weight_dtype: torch.dtype, device, *,
                        adapter: AdapterStateDict | None = None, seed: int = 0, resampler_width: int = 1280,
                        num_tokens: int = 16, gradient_checkpointing: bool = False) -> TrainingComponents:
    """Make an InstantID pipeline (its `controlnet` is IdentityNet) trainable: load the face adapter
    (`adapter`, or a fresh one drawn from `seed`), freeze the rest, place and cast everything."""
    from diffusers import DDPMScheduler

    unet, identitynet = pipe.unet, pipe.controlnet
    pipe.set_progress_bar_config(disable=True)
    if adapter is None:
        adapter = fresh_adapter_state_dict(unet, embedding_dim, resampler_width, num_tokens,
                                           torch.Generator().manual_seed(seed))
    problem = embedding_size_problem(embedding_dim, resampler_shape(adapter["image_proj"]).embedding_dim,
                                     "the dataset has")
    if problem:
        raise TrainingConfigError(f"{problem}; prepare the data with that backend, or start a fresh adapter")
    pipe.load_ip_adapter_instantid(adapter, scale=1.0)  # trained at full strength, as IP-Adapter

    frozen = [pipe.vae, *[m for m in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if m is not None]]
    mark_trainable(unet, identitynet, frozen)
    _place(pipe, family, weight_dtype, device)
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        identitynet.enable_gradient_checkpointing()
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    return TrainingComponents(family, pipe, InstantIDTrainingModel(unet, identitynet), noise_scheduler, weight_dtype)


def _place(pipe, family: str, weight_dtype: torch.dtype, device) -> None:
    """Frozen weights in `weight_dtype`, trainable ones in fp32 (mixed precision autocasts the compute);
    the SDXL VAE stays fp32 because it overflows in fp16."""
    # nn.Module.to: diffusers' own .to() warns about fp32-pinned modules, and we pin exactly what we mean.
    for encoder in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if encoder is not None:
            torch.nn.Module.to(encoder, device, dtype=weight_dtype)
    torch.nn.Module.to(pipe.vae, device, dtype=torch.float32 if family == SDXL else weight_dtype)
    torch.nn.Module.to(pipe.unet, device, dtype=weight_dtype)
    for module in trainable_modules(pipe.unet, pipe.controlnet):
        torch.nn.Module.to(module, device, dtype=torch.float32)


def fresh_adapter_state_dict(unet, embedding_dim: int, width: int, num_tokens: int,
                             generator: torch.Generator) -> AdapterStateDict:
    """A new face adapter in the released layout: the Resampler with PyTorch's default initialisation
    (drawn from `generator`), each to_k_ip/to_v_ip a copy of its attention's to_k/to_v (IP-Adapter's
    choice: the face branch starts out reading face tokens the way the text branch reads text)."""
    shapes = released_adapter_shapes(unet, embedding_dim=embedding_dim, resampler_width=width, num_tokens=num_tokens)
    image_proj = {}
    for key, shape in shapes["image_proj"].items():
        if key == "latents":
            image_proj[key] = torch.randn(shape, generator=generator) * width ** -0.5
        elif len(shape) == 2 or (key.endswith(".bias") and len(shapes["image_proj"][key[:-5] + ".weight"]) == 2):
            fan_in = shapes["image_proj"][key[:-5] + ".weight"][1] if key.endswith(".bias") else shape[1]
            bound = fan_in ** -0.5  # nn.Linear's default init
            image_proj[key] = (torch.rand(shape, generator=generator) * 2 - 1) * bound
        else:  # LayerNorm
            image_proj[key] = torch.ones(shape) if key.endswith(".weight") else torch.zeros(shape)
    ip_adapter = {}
    for position, attn in cross_attention_modules(unet).items():
        ip_adapter[f"{position}.to_k_ip.weight"] = attn.to_k.weight.detach().to("cpu", torch.float32, copy=True)
        ip_adapter[f"{position}.to_v_ip.weight"] = attn.to_v.weight.detach().to("cpu", torch.float32, copy=True)
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def load_identitynet(spec, unet, vae):
    """The released (or any) IdentityNet to fine-tune, or a new one copied from the UNet."""
    from diffusers import ControlNetModel

    if spec:
        from ..pipelines.loading import load_identitynet as load_released

        identitynet = load_released(spec)
        if identitynet.config.cross_attention_dim != unet.config.cross_attention_dim:
            raise TrainingConfigError(
                f"IdentityNet {spec} has cross-attention width {identitynet.config.cross_attention_dim} but the base "
                f"UNet has {unet.config.cross_attention_dim}; use an IdentityNet made for this base family")
        return identitynet
    levels = len(vae.config.block_out_channels)  # the keypoint encoder must downsample as much as the VAE
    channels = RELEASED_CONDITIONING_CHANNELS[:levels] if levels <= 4 else RELEASED_CONDITIONING_CHANNELS
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)


def resolve_base(spec) -> Path:
    from ..pipelines import hub
    from ..pipelines.loading import BASE_FILE_PATTERNS

    if Path(str(spec)).suffix in (".safetensors", ".ckpt"):
        raise TrainingConfigError(
            f"training needs a diffusers folder or Hub id as base, not the single file {spec}; convert it once with "
            "StableDiffusionXLPipeline.from_single_file(path).save_pretrained(DIR) and pass DIR")
    return hub.resolve_dir(spec, what="base model", hint="with --pretrained_model_name_or_path",
                           allow_patterns=BASE_FILE_PATTERNS)


def detect_family(base_dir: Path, asked: str = "auto") -> str:
    """SDXL or SD1.5 family, from the base UNet's own config (models.architectures.family_of_config), or
    FLUX for a FLUX pipeline folder; `asked` (--family) must agree with it."""
    from .flux import is_flux_base  # the FLUX family's module builds on this one

    unet_config = base_dir / "unet" / "config.json"
    if is_flux_base(base_dir):
        family = FLUX
    elif unet_config.is_file():
        family = family_of_config(json.loads(unet_config.read_text(encoding="utf-8")))
    else:
        raise TrainingConfigError(f"{base_dir} is not a diffusers base model folder (no unet/config.json, nor a FLUX "
                                  "transformer/config.json)")
    if asked not in ("auto", family):
        raise TrainingConfigError(f"--family {asked}, but {base_dir} is a {family} base; pass a {asked} base or "
                                  f"--family {family} (or auto)")
    return family


def pipeline_class(family: str):
    from ..pipelines.loading import pipeline_class as inference_pipeline_class

    return inference_pipeline_class(family)
