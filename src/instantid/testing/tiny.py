"""Tiny random InstantID checkpoints in the released on-disk layout, for tests and benchmarks.

``build_tiny_instantid(out_dir)`` writes, like ``shared/fixtures/official-parity``::

    out_dir/base/              diffusers pipeline folder (model_index.json, unet, vae, text
                               encoder(s), tokenizer(s), EulerDiscreteScheduler)
    out_dir/ControlNetModel/   IdentityNet: a diffusers ControlNetModel (safetensors)
    out_dir/ip-adapter.bin     torch.save({"image_proj": Resampler, "ip_adapter": to_k_ip/to_v_ip})

Everything is random and works offline; stock diffusers pipelines load it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from instantid.models.architectures import (
    FACE_EMBEDDING_DIM,
    RESAMPLER_DEPTH,
    RESAMPLER_NUM_TOKENS,
    released_adapter_shapes,
)
from instantid.testing.architectures import (
    euler_scheduler_config,
    full_identitynet_config,
    full_sdxl_unet_config,
    tiny_clip_text_config,
    tiny_sd15_unet_config,
    tiny_sdxl_unet_config,
    tiny_vae_config,
)

__all__ = [
    "TinyPaths",
    "build_tiny_instantid",
    "tiny_instantid_cached",
    "byte_level_clip_tokenizer",
    "random_adapter_state_dict",
    "save_adapter_safetensors",
    "build_tiny_lora",
    # full-size shapes, for meta-device tests (testing/architectures.py, models/architectures.py)
    "full_identitynet_config",
    "full_sdxl_unet_config",
    "released_adapter_shapes",
]

ARCHES = ("sdxl", "sd15")
TINY_RESAMPLER_WIDTH = 128
# The fixture's IdentityNet uses a 2-level conditioning embedding (the released one has 4).
TINY_CONDITIONING_CHANNELS = (8, 16)
# Scale of the random values put into the ControlNet's zero-initialised output convolutions,
# so that IdentityNet changes the result (the fixture's are about this size too).
ZERO_CONV_STD = 0.05
# Part of the cache key: bump when the builder's output changes.
BUILDER_VERSION = 1


@dataclass(frozen=True)
class TinyPaths:
    root: Path
    base: Path  # diffusers base pipeline folder
    identitynet: Path  # ControlNetModel/ folder
    adapter: Path  # ip-adapter.bin


def build_tiny_instantid(
    out_dir: str | Path,
    *,
    arch: str = "sdxl",
    embedding_dim: int = FACE_EMBEDDING_DIM,
    seed: int = 0,
    num_tokens: int = RESAMPLER_NUM_TOKENS,
    resampler_width: int = TINY_RESAMPLER_WIDTH,
    resampler_depth: int = RESAMPLER_DEPTH,
    dtype: torch.dtype = torch.float32,
) -> TinyPaths:
    """Write a tiny random base model, IdentityNet and face adapter under ``out_dir``.

    ``arch="sdxl"`` mirrors the official-parity fixture; ``arch="sd15"`` is an SD1.5-shaped
    variant (one text encoder, no added time embedding). The same arguments give the same
    tensors, and the global torch RNG is left untouched.
    """
    if arch not in ARCHES:
        raise ValueError(f"arch must be one of {ARCHES}, got {arch!r}")
    root = Path(out_dir)
    paths = TinyPaths(root, root / "base", root / "ControlNetModel", root / "ip-adapter.bin")
    root.mkdir(parents=True, exist_ok=True)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = _build_base_pipeline(arch)
        identitynet = _build_identitynet(pipe.unet)
        adapter = random_adapter_state_dict(
            released_adapter_shapes(
                pipe.unet,
                embedding_dim=embedding_dim,
                resampler_width=resampler_width,
                resampler_depth=resampler_depth,
                num_tokens=num_tokens,
            )
        )

    for module in [*pipe.components.values(), identitynet]:
        if isinstance(module, torch.nn.Module):
            # nn.Module.to: diffusers' own .to() warns about fp32-pinned modules, of which
            # these tiny models have none.
            torch.nn.Module.to(module, dtype=dtype)
    pipe.save_pretrained(paths.base, safe_serialization=True)
    identitynet.save_pretrained(paths.identitynet, safe_serialization=True)
    torch.save(
        {part: {k: v.to(dtype) for k, v in tensors.items()} for part, tensors in adapter.items()},
        paths.adapter,
    )
    return paths


def tiny_instantid_cached(
    *,
    arch: str = "sdxl",
    embedding_dim: int = FACE_EMBEDDING_DIM,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> TinyPaths:
    """``build_tiny_instantid`` once per (arch, embedding_dim, seed), kept under ``cache_dir``
    (default ``$XDG_CACHE_HOME/instantid/tiny``, i.e. ``~/.cache/instantid/tiny``)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = built_once(cache_dir / f"v{BUILDER_VERSION}-{arch}-emb{embedding_dim}-seed{seed}",
                        lambda staging: build_tiny_instantid(staging, arch=arch, embedding_dim=embedding_dim, seed=seed))
    return TinyPaths(target, target / "base", target / "ControlNetModel", target / "ip-adapter.bin")


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/instantid/tiny (default ~/.cache/instantid/tiny)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "instantid" / "tiny"


def built_once(target: Path, build) -> Path:
    """`target`, made by `build(folder)` unless it exists. Built beside the target and renamed: a reader never
    sees a half-written folder, and of two concurrent builders the second simply discards its copy."""
    target = Path(target)
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        build(staging)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    return target


def random_lora_layers(model, *, rank: int = 4, seed: int = 0) -> dict:
    """A LoRA on `model`'s attention projections (peft), in diffusers' layout, with random B: peft starts
    lora_B at zero (a no-op LoRA), random B makes the LoRA change the output."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) * 0.1
            for k, v in convert_state_dict_to_diffusers(get_peft_model_state_dict(model)).items()}


def _build_base_pipeline(arch: str):
    unet_config = tiny_sdxl_unet_config() if arch == "sdxl" else tiny_sd15_unet_config()
    unet = UNet2DConditionModel(**unet_config)
    vae = AutoencoderKL(**tiny_vae_config())
    scheduler = EulerDiscreteScheduler(**euler_scheduler_config())
    text_config = CLIPTextConfig(**tiny_clip_text_config())
    text_encoder = CLIPTextModel(text_config)
    if arch == "sd15":
        return StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=byte_level_clip_tokenizer(),
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=byte_level_clip_tokenizer(),
        # SDXL's second tokenizer pads with "!" instead of <|endoftext|>.
        tokenizer_2=byte_level_clip_tokenizer(pad_token="!"),
        unet=unet,
        scheduler=scheduler,
    )


def _build_identitynet(unet: UNet2DConditionModel) -> ControlNetModel:
    """A ControlNet copied from the UNet (as InstantID's training starts), with its zero
    convolutions made non-zero: a zero ControlNet would have no effect in tests."""
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=TINY_CONDITIONING_CHANNELS
    )
    zero_convs = [
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
        controlnet.controlnet_cond_embedding.conv_out,
    ]
    with torch.no_grad():
        for conv in zero_convs:
            for param in conv.parameters():
                param.normal_(0.0, ZERO_CONV_STD)
    return controlnet


def random_adapter_state_dict(
    shapes: dict[str, dict[str, tuple[int, ...]]],
) -> dict[str, dict[str, torch.Tensor]]:
    """Random tensors for a ``released_adapter_shapes`` map, scaled so activations stay O(1):
    LayerNorm weights near 1, matrices ~ N(0, 1/fan_in), biases small."""
    state = {}
    for part, part_shapes in shapes.items():
        state[part] = {}
        for key, shape in part_shapes.items():
            if len(shape) == 1 and key.endswith(".weight"):  # LayerNorm gain
                tensor = 1.0 + 0.1 * torch.randn(shape)
            elif len(shape) == 1:  # bias
                tensor = 0.1 * torch.randn(shape)
            else:  # Linear weight [out, in], or the latents [1, tokens, width]
                tensor = torch.randn(shape) * shape[-1] ** -0.5
            state[part][key] = tensor
    return state


def save_adapter_safetensors(state_dict: dict[str, dict[str, torch.Tensor]], path: str | Path):
    """Write an ``ip-adapter.bin``-style dict as the community ``.safetensors`` variant,
    with ``image_proj.`` / ``ip_adapter.`` key prefixes."""
    flat = {
        f"{part}.{key}": tensor.contiguous()
        for part in ("image_proj", "ip_adapter")
        for key, tensor in state_dict[part].items()
    }
    save_file(flat, str(path))


def _byte_symbols() -> list[str]:
    """The 256 printable characters that byte-level BPE (GPT-2/CLIP) uses for bytes 0..255:
    printable Latin-1 bytes stand for themselves, the others are shifted past 255 —
    listed in vocabulary order (printable bytes first)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    shifted = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(shifted))]


def byte_level_clip_tokenizer(pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """A CLIPTokenizer with no merges: every character is its own token (id < 256, or
    256 + id at the end of a word), then <|startoftext|>=512 and <|endoftext|>=513, matching
    the tiny text encoders' vocab_size/bos/eos. Built offline from files written here."""
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        # vocab.json + merges.txt is the one input every transformers version's CLIPTokenizer
        # accepts; save_pretrained then writes this version's native files.
        Path(tmp, "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        Path(tmp, "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        tokenizer = CLIPTokenizer.from_pretrained(tmp, pad_token=pad_token, model_max_length=77)
    for loading_detail in ("is_local", "local_files_only"):  # not worth saving with it
        tokenizer.init_kwargs.pop(loading_detail, None)
    return tokenizer


def build_tiny_lora(base_dir: str | Path, out_path: str | Path, *, rank: int = 4, seed: int = 0) -> Path:
    """A random UNet LoRA for the tiny base at `base_dir`, saved as diffusers LoRA safetensors."""
    unet = UNet2DConditionModel.from_pretrained(Path(base_dir) / "unet")
    layers = random_lora_layers(unet, rank=rank, seed=seed)
    out_path = Path(out_path)
    from instantid.models.architectures import SDXL, family_of_config

    pipeline_cls = StableDiffusionXLPipeline if family_of_config(unet.config) == SDXL else StableDiffusionPipeline
    pipeline_cls.save_lora_weights(out_path.parent, unet_lora_layers=layers, weight_name=out_path.name)
    return out_path


def build_tiny_clip(model_dir: str | Path) -> Path:
    """A tiny random transformers CLIP model and processor saved to `model_dir`: stands in for a downloaded
    CLIP in evaluation tests (CLIP-T / CLIP-I get computed; the numbers mean nothing)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    text = dict(vocab_size=514, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32,
                  patch_size=8)
    model_dir = Path(model_dir)
    with torch.random.fork_rng():  # reproducible weights, and the caller's RNG untouched
        torch.manual_seed(0)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(model_dir)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                  tokenizer=byte_level_clip_tokenizer()).save_pretrained(model_dir)
    return model_dir
