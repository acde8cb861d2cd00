"""The FLUX family's training components: InstantID (InfiniteYou's recipe) on a frozen FLUX base.

What trains: the Resampler (face embedding -> face tokens of the DiT's text width) and IdentityNet
for FLUX (a `FluxControlNetModel`, InfiniteYou's "InfuseNet", that sees the face tokens instead of the
text and the VAE latent of the keypoint image as its control), plus, with `--adapter_branch`,
InstantID's image-adapter branch inside the DiT's double-stream attention (models/flux_face_adapter.py).
The DiT, the VAE and both text encoders are frozen.

The objective is FLUX's rectified flow, sampled as diffusers' FLUX training examples do
(`train_controlnet_flux.py`, `train_dreambooth_lora_flux.py`): u ~ `compute_density_for_timestep_sampling`
(uniform by default, or logit-normal / mode), the scheduler's timestep and sigma at u,
x_t = (1 - sigma) x_0 + sigma * noise, the DiT fed t / 1000 and the distilled guidance value (when it has a
guidance embedding), target noise - x_0, weighted by `compute_loss_weighting_for_sd3`. IdentityNet gets
InfiniteYou's guidance value 1.0 and zero text ids for its face tokens, as the pipeline feeds it.

Everything else (data, buckets, caches, resume, accelerate, validation, loss log) is the shared
training package; this module is the family's row of it: components, loss and checkpoint layout.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.flux_face_adapter import (
    copy_face_adapter_,
    face_adapter_kwargs,
    face_adapter_processors,
    face_adapter_state_dict,
    install_face_adapter,
    is_flux_adapter_state_dict,
)
from ..models.face_paths import FLUX
from ..models.flux_identitynet import INFUSENET_GUIDANCE
from .errors import TrainingConfigError
from .model import TrainingComponents

logger = logging.getLogger(__name__)

# InfiniteYou's release layout inside a checkpoint / output folder.
IDENTITYNET_DIR = "InfuseNetModel"
ADAPTER_FILES = {"bin": "image_proj_model.bin", "safetensors": "image_proj_model.safetensors"}
# InfiniteYou's sizes for a fresh model: 8 face tokens; InfuseNet with 4 double and 10 single blocks.
DEFAULT_NUM_TOKENS = 8
DEFAULT_IDENTITYNET_LAYERS, DEFAULT_IDENTITYNET_SINGLE_LAYERS = 4, 10
DEFAULT_RESOLUTION = 1024
DEFAULT_VALIDATION_GUIDANCE = 3.5
WEIGHTING_SCHEMES = ("none", "logit_normal", "mode", "sigma_sqrt", "cosmap")


def is_flux_base(base_dir: Path) -> bool:
    """A diffusers FLUX pipeline folder: a transformer/ whose config is a FluxTransformer2DModel's."""
    config = Path(base_dir) / "transformer" / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("_class_name") == "FluxTransformer2DModel"
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class FlowObjective:
    """How noise levels are drawn and weighted (diffusers' FLUX training examples' options)."""

    weighting_scheme: str = "none"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    guidance_scale: float = 3.5  # the DiT's distilled-guidance input while training (guidance-embedding bases)

    @classmethod
    def from_args(cls, args) -> "FlowObjective":
        return cls(args.weighting_scheme, args.logit_mean, args.logit_std, args.mode_scale, args.guidance_scale)


class FluxInstantIDTrainingModel(torch.nn.Module):
    """The DiT (frozen; with `adapter_branch`, holding the trainable face attention), IdentityNet and the
    Resampler as one module, so DDP and DeepSpeed see a single model. `forward` is the velocity prediction
    of one InstantID step, as the pipeline computes it. `identitynet=None`: the adapter branch alone."""

    def __init__(self, transformer, identitynet, face_projection, adapter_branch: bool):
        super().__init__()
        self.transformer = transformer
        self.identitynet = identitynet
        self.face_projection = face_projection
        self.adapter_branch = bool(adapter_branch)

    def forward(self, noisy, timesteps, guidance, text_states, pooled_text, image_ids, face_embeddings,
                control_latents):
        """noisy / control_latents: packed [B, tokens, 4C]; timesteps in [0, 1]; face_embeddings [B, E] unit-norm."""
        tokens = self.face_projection(face_embeddings[:, None].to(next(self.face_projection.parameters()).dtype))
        double = single = None
        if self.identitynet is not None:
            identity_guidance = None if guidance is None or not self.identitynet.config.guidance_embeds \
                else torch.full_like(guidance, INFUSENET_GUIDANCE)
            double, single = self.identitynet(
                hidden_states=noisy, controlnet_cond=control_latents, encoder_hidden_states=tokens.to(text_states),
                pooled_projections=pooled_text, timestep=timesteps, img_ids=image_ids,
                txt_ids=image_ids.new_zeros((tokens.shape[1], 3)), guidance=identity_guidance, return_dict=False)
        text_ids = image_ids.new_zeros((text_states.shape[1], 3))
        kwargs = face_adapter_kwargs(tokens.to(text_states)) if self.adapter_branch else None
        return self.transformer(hidden_states=noisy, timestep=timesteps, guidance=guidance,
                                pooled_projections=pooled_text, encoder_hidden_states=text_states, txt_ids=text_ids,
                                img_ids=image_ids, controlnet_block_samples=double,
                                controlnet_single_block_samples=single, joint_attention_kwargs=kwargs,
                                return_dict=False)[0]


@dataclass
class FluxTrainingComponents(TrainingComponents):
    """The shared components (family, pipe, model, noise_scheduler, weight_dtype; vae, identitynet and
    text_encoders as for SDXL) plus the FLUX objective; the DiT in place of the UNet."""

    objective: FlowObjective = FlowObjective()

    @property
    def transformer(self):
        return self.pipe.transformer

    @property
    def device(self):
        return self.pipe.transformer.device


# ---- components -----------------------------------------------------------------------------------

def load_flux_components(args, base_dir: Path, embedding_dim: int, weight_dtype: torch.dtype,
                         device) -> FluxTrainingComponents:
    """The FLUX base folder + IdentityNet + Resampler (+ adapter branch), ready to train on `device`."""
    from diffusers import FluxTransformer2DModel

    from ..pipelines.flux import FluxInstantIDPipeline

    transformer = FluxTransformer2DModel.from_pretrained(base_dir, subfolder="transformer")
    identitynet = load_flux_identitynet(args, transformer)
    pipe = FluxInstantIDPipeline.from_pretrained(base_dir, transformer=transformer, controlnet=identitynet)
    saved = load_flux_adapter_file(args.adapter) if args.adapter else None
    return assemble_flux_components(
        pipe, embedding_dim, weight_dtype, device, saved=saved, seed=args.seed, resampler_width=args.resampler_width,
        num_tokens=args.num_tokens or DEFAULT_NUM_TOKENS, adapter_branch=args.adapter_branch,
        gradient_checkpointing=args.gradient_checkpointing, objective=FlowObjective.from_args(args))


def load_flux_identitynet(args, transformer):
    """The IdentityNet to fine-tune (e.g. InfiniteYou's InfuseNetModel/), or a new one from the DiT's first
    blocks (`FluxControlNetModel.from_transformer`: zero-initialised control input and output projections)."""
    from diffusers import FluxControlNetModel

    if args.identitynet:
        from ..pipelines import hub

        folder = hub.resolve_dir(args.identitynet, what="IdentityNet", hint="with --identitynet")
        identitynet = FluxControlNetModel.from_pretrained(folder)
        if identitynet.config.joint_attention_dim != transformer.config.joint_attention_dim or \
                identitynet.config.in_channels != transformer.config.in_channels:
            raise TrainingConfigError(
                f"IdentityNet {args.identitynet} does not fit this FLUX base (text width "
                f"{identitynet.config.joint_attention_dim} vs {transformer.config.joint_attention_dim}, latent channels "
                f"{identitynet.config.in_channels} vs {transformer.config.in_channels}); use one made for this base")
        return identitynet
    layers = min(args.identitynet_layers, transformer.config.num_layers)
    single = min(args.identitynet_single_layers, transformer.config.num_single_layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        return FluxControlNetModel.from_transformer(
            transformer, num_layers=layers, num_single_layers=single,
            attention_head_dim=transformer.config.attention_head_dim,
            num_attention_heads=transformer.config.num_attention_heads, load_weights_from_transformer=True)


def fresh_image_proj_state_dict(embedding_dim: int, token_width: int, width: int, num_tokens: int,
                                seed: int) -> dict[str, torch.Tensor]:
    """A new Resampler (InfiniteYou's: depth 4, 64-d heads, 4x feed-forward) with PyTorch's default
    initialisation drawn from `seed`, in the released key layout."""
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    from ..models.adapter import resampler_state_dict_to_released
    from ..models.architectures import RESAMPLER_DEPTH, RESAMPLER_DIM_HEAD, RESAMPLER_FF_MULT

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        projection = IPAdapterPlusImageProjection(
            embed_dims=embedding_dim, output_dims=token_width, hidden_dims=width, depth=RESAMPLER_DEPTH,
            dim_head=RESAMPLER_DIM_HEAD, heads=width // RESAMPLER_DIM_HEAD, num_queries=num_tokens,
            ffn_ratio=RESAMPLER_FF_MULT)
    return {k: v.detach().clone().contiguous() for k, v in resampler_state_dict_to_released(projection.state_dict()).items()}


def assemble_flux_components(pipe, embedding_dim: int, weight_dtype: torch.dtype, device, *, saved: dict | None = None,
                             seed: int = 0, resampler_width: int = 1280, num_tokens: int = DEFAULT_NUM_TOKENS,
                             adapter_branch: bool = False, gradient_checkpointing: bool = False,
                             objective: FlowObjective = FlowObjective()) -> FluxTrainingComponents:
    """Make a FluxInstantIDPipeline trainable: load the Resampler (from `saved` = {"image_proj", ["ip_adapter"]},
    or fresh from `seed`), optionally install the adapter branch, freeze the rest, place and cast."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from ..models.architectures import embedding_size_problem
    from ..models.adapter import resampler_shape

    transformer, identitynet = pipe.transformer, pipe.controlnet
    pipe.set_progress_bar_config(disable=True)
    token_width = transformer.config.joint_attention_dim
    image_proj = (saved or {}).get("image_proj") or fresh_image_proj_state_dict(
        embedding_dim, token_width, resampler_width, num_tokens, seed)
    problem = embedding_size_problem(embedding_dim, resampler_shape(image_proj).embedding_dim, "the dataset has")
    if problem:
        raise TrainingConfigError(f"{problem}; prepare the data with that backend, or start a fresh face projection")
    pipe.load_ip_adapter_instantid({"image_proj": image_proj})
    projection = pipe.face_projection

    for module in (transformer, pipe.vae, *[m for m in (pipe.text_encoder, pipe.text_encoder_2) if m is not None]):
        module.requires_grad_(False)
    if adapter_branch:
        install_face_adapter(transformer, projection.latents.shape[1], (saved or {}).get("ip_adapter"))
    elif (saved or {}).get("ip_adapter"):
        raise TrainingConfigError("--adapter holds an adapter branch (ip_adapter weights): add --adapter_branch to "
                                  "fine-tune it, or start from a file without one")
    trainable = [projection, identitynet, *(face_adapter_processors(transformer) if adapter_branch else [])]
    for module in trainable:
        module.requires_grad_(True)
        module.train()

    for module in (pipe.text_encoder, pipe.text_encoder_2, pipe.vae, transformer):
        if module is not None:
            torch.nn.Module.to(module, device, dtype=weight_dtype)
    for module in trainable:  # trained weights in fp32; mixed precision autocasts the compute
        torch.nn.Module.to(module, device, dtype=torch.float32)
    if gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
        identitynet.enable_gradient_checkpointing()
    model = FluxInstantIDTrainingModel(transformer, identitynet, projection, adapter_branch)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    return FluxTrainingComponents(FLUX, pipe, model, scheduler, weight_dtype, objective)


# ---- the step ---------------------------------------------------------------------------------------

def pack(latents: torch.Tensor) -> torch.Tensor:
    from diffusers import FluxPipeline

    batch, channels, height, width = latents.shape
    return FluxPipeline._pack_latents(latents, batch, channels, height, width)


def image_ids(latents: torch.Tensor) -> torch.Tensor:
    from diffusers import FluxPipeline

    batch, _, height, width = latents.shape
    return FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2, latents.device, latents.dtype)


def unit_norm(embeddings: torch.Tensor) -> torch.Tensor:
    """The FLUX face path takes unit-norm embeddings (ArcFace's are; dlib's 128-d ones are normalised so the
    licence-clean dlib route trains and generates alike). A dropped (zero) face stays zero."""
    return F.normalize(embeddings.float(), dim=-1)


def sample_noise_levels(components: FluxTrainingComponents, size: int, generator: torch.Generator):
    """(timesteps in the scheduler's 0..1000 scale, sigmas) for one batch, as diffusers' FLUX examples draw them."""
    from diffusers.training_utils import compute_density_for_timestep_sampling

    objective, scheduler = components.objective, components.noise_scheduler
    u = compute_density_for_timestep_sampling(objective.weighting_scheme, size, logit_mean=objective.logit_mean,
                                              logit_std=objective.logit_std, mode_scale=objective.mode_scale,
                                              generator=generator)
    count = len(scheduler.timesteps)
    indices = (u * scheduler.config.num_train_timesteps).long().clamp(0, count - 1)
    return scheduler.timesteps[indices].float(), scheduler.sigmas[indices].float()


def compute_flux_loss(components: FluxTrainingComponents, model, batch: dict, generator: torch.Generator, *,
                      text_dropout: float = 0.0, face_dropout: float = 0.0, empty_text: dict | None = None) -> torch.Tensor:
    """Flow-matching MSE between (noise - x_0) and InstantID-on-FLUX's prediction for one batch."""
    from diffusers.training_utils import compute_loss_weighting_for_sd3

    from .conditioning import encode_captions, encode_images
    from .loop import _drop_conditions

    device = components.device
    vae = components.vae
    latents = batch["latents"].to(device) if "latents" in batch else encode_images(vae, batch["pixel_values"])
    control = encode_images(vae, batch["kps_image"] * 2.0 - 1.0)  # the pipeline's [-1, 1] control image, VAE-encoded
    if "text_states" in batch:
        text = {key: batch[key].to(device) for key in ("text_states", "pooled_text")}
    else:
        text = encode_captions(components.pipe, FLUX, batch["caption"], device)
    faces = batch["face_embedding"].to(device)

    size = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator).to(device)
    timesteps, sigmas = sample_noise_levels(components, size, generator)
    drop_text, drop_face = (torch.rand(2, size, generator=generator) < torch.tensor([[text_dropout], [face_dropout]]))
    text, faces = _drop_conditions(text, faces, drop_text.to(device), drop_face.to(device), empty_text)

    sigma = sigmas.to(device).view(-1, 1, 1, 1)
    noisy = (1.0 - sigma) * latents + sigma * noise
    dtype = components.weight_dtype
    guidance = torch.full((size,), components.objective.guidance_scale, device=device) \
        if components.transformer.config.guidance_embeds else None
    prediction = model(pack(noisy).to(dtype), (timesteps / 1000).to(device), guidance,
                       text["text_states"].to(dtype), text["pooled_text"].to(dtype), image_ids(noisy),
                       unit_norm(faces), pack(control).to(dtype))
    target = pack(noise - latents)
    weighting = compute_loss_weighting_for_sd3(components.objective.weighting_scheme, sigmas).to(device).view(-1, 1, 1)
    return (weighting.float() * (prediction.float() - target.float()) ** 2).reshape(size, -1).mean(1).mean()


# ---- checkpoints: InfiniteYou's layout ------------------------------------------------------------

def flux_adapter_state(model: FluxInstantIDTrainingModel) -> dict:
    """{"image_proj": Resampler (released keys)} plus {"ip_adapter": branch weights} with the adapter branch."""
    from ..models.adapter import resampler_state_dict_to_released

    image_proj = {k: v.detach().to("cpu", torch.float32).contiguous().clone()
                  for k, v in resampler_state_dict_to_released(model.face_projection.state_dict()).items()}
    state = {"image_proj": image_proj}
    if model.adapter_branch:
        state["ip_adapter"] = face_adapter_state_dict(model.transformer)
    return state


def save_flux_adapter_file(state: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({f"{part}.{k}": v.contiguous() for part, tensors in state.items() for k, v in tensors.items()},
                  str(path))
    else:
        torch.save({part: dict(tensors) for part, tensors in state.items()}, path)
    return path


def load_flux_adapter_file(source) -> dict:
    """{"image_proj": ..., ["ip_adapter": ...]} from an image_proj_model.bin / .safetensors (checked, weights_only)."""
    from ..models.flux_adapter import load_face_adapter_parts

    return load_face_adapter_parts(source)


def export_flux_weights(model: FluxInstantIDTrainingModel, folder, adapter_format: str = "bin") -> dict[str, Path]:
    """`InfuseNetModel/` (diffusers FluxControlNetModel folder) + `image_proj_model.bin`, as InfiniteYou releases them."""
    folder = Path(folder)
    identitynet_dir = folder / IDENTITYNET_DIR
    model.identitynet.save_pretrained(identitynet_dir, safe_serialization=True)
    adapter = save_flux_adapter_file(flux_adapter_state(model), folder / ADAPTER_FILES[adapter_format])
    return {"identitynet": identitynet_dir, "adapter": adapter}


def import_flux_weights_(model: FluxInstantIDTrainingModel, folder) -> None:
    """Overwrite the trained modules in place (the optimizer keeps its parameters) from a checkpoint folder."""
    from diffusers import FluxControlNetModel

    from ..errors import CheckpointError
    from ..models.adapter import resampler_state_dict_to_diffusers

    folder = Path(folder)
    saved = FluxControlNetModel.from_pretrained(folder / IDENTITYNET_DIR)
    model.identitynet.load_state_dict(saved.state_dict(), strict=True)
    adapter_file = next((folder / name for name in ADAPTER_FILES.values() if (folder / name).is_file()), None)
    if adapter_file is None:
        raise CheckpointError(f"checkpoint {folder} has no {' or '.join(ADAPTER_FILES.values())}; it is incomplete: "
                              "resume from an earlier checkpoint")
    state = load_flux_adapter_file(adapter_file)
    with torch.no_grad():
        model.face_projection.load_state_dict(resampler_state_dict_to_diffusers(state["image_proj"]), strict=True)
    if model.adapter_branch:
        if not is_flux_adapter_state_dict(state.get("ip_adapter")):
            raise CheckpointError(f"{adapter_file} has no adapter branch, but this run trains one (--adapter_branch)")
        copy_face_adapter_(model.transformer, state["ip_adapter"])
