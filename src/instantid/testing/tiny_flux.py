"""A tiny random FLUX InstantID family in InfiniteYou's released layout, for tests, benchmarks and `--tiny`.

``build_tiny_flux(out_dir)`` writes, like ``shared/fixtures/infiniteyou-parity``::

    out_dir/base/                  a FLUX.1-dev-shaped diffusers pipeline folder (FluxTransformer2DModel with
                                   guidance embeds, a 16-channel AutoencoderKL, CLIP + T5 text encoders and
                                   tokenizers, FLUX.1-dev's FlowMatchEulerDiscreteScheduler)
    out_dir/InfuseNetModel/        IdentityNet: a diffusers FluxControlNetModel, sharded in two like the release
    out_dir/image_proj_model.bin   torch.save({"image_proj": Resampler}), 512-d in, 8 tokens

Every Linear is drawn from N(0, 1/fan_in) and every tensor diffusers initialises to a constant is randomised
(as the fixture does): with PyTorch's defaults a random FLUX barely reacts to its inputs. Works offline.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxControlNetModel,
    FluxPipeline,
    FluxTransformer2DModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel, T5TokenizerFast

from instantid.testing.architectures import tiny_clip_text_config
from instantid.testing.tiny import TinyPaths, built_once, byte_level_clip_tokenizer, default_cache_dir, random_lora_layers

# Part of the cache key: bump when the builder's output changes.
BUILDER_VERSION = 1
TOKEN_WIDTH = 32  # joint_attention_dim: T5's width, and the face tokens'
POOLED_WIDTH = 32  # CLIP's projection width
RESAMPLER_WIDTH, RESAMPLER_HEADS, RESAMPLER_TOKENS, FACE_EMBEDDING_DIM = 128, 2, 8, 512


def tiny_flux_transformer_config(num_layers: int = 2, num_single_layers: int = 2) -> dict:
    return dict(patch_size=1, in_channels=64, num_layers=num_layers, num_single_layers=num_single_layers,
                attention_head_dim=16, num_attention_heads=2, joint_attention_dim=TOKEN_WIDTH,
                pooled_projection_dim=POOLED_WIDTH, guidance_embeds=True, axes_dims_rope=(4, 6, 6))


def tiny_flux_vae_config() -> dict:
    """FLUX's VAE shape in small: 16 latent channels, 8x down, FLUX's scale/shift, no quant convs."""
    return dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 16, 16, 16),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=1, norm_num_groups=4, sample_size=128, scaling_factor=0.3611, shift_factor=0.1159,
                use_quant_conv=False, use_post_quant_conv=False)


def flux_dev_scheduler_config() -> dict:
    """FLUX.1-dev's scheduler: shift 3.0 with resolution-dependent (dynamic) shifting."""
    return dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                base_image_seq_len=256, max_image_seq_len=4096)


def tiny_t5_config(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, d_model=TOKEN_WIDTH, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False, use_cache=False,
                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def tiny_t5_tokenizer() -> T5TokenizerFast:
    """A character-level Unigram tokenizer in T5's conventions (<pad>=0, </s>=1, <unk>=2, '▁' word starts)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    characters = [chr(c) for c in range(ord("!"), ord("~") + 1)]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)] + [(c, -4.0) for c in characters]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                             special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=512)


def _randomise_(module: torch.nn.Module) -> None:
    """Linear weights ~ N(0, 1/fan_in); every other tensor that init left constant (norm gains, zero biases,
    the ControlNet's zero projections) drawn around its value, so every tensor matters."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim == 2:
                param.normal_(0.0, param.shape[1] ** -0.5)
            elif param.numel() > 1 and bool((param == param.flatten()[0]).all()):
                param.add_(torch.randn_like(param) * 0.1)


def random_resampler_state_dict(output_dim: int = TOKEN_WIDTH, embedding_dim: int = FACE_EMBEDDING_DIM) -> dict[str, torch.Tensor]:
    """A random InfiniteYou Resampler (IP-Adapter-Plus perceiver) in the released key layout."""
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    from instantid.models.adapter import resampler_state_dict_to_released

    projection = IPAdapterPlusImageProjection(embed_dims=embedding_dim, output_dims=output_dim,
                                              hidden_dims=RESAMPLER_WIDTH, depth=4, dim_head=64,
                                              heads=RESAMPLER_HEADS, num_queries=RESAMPLER_TOKENS, ffn_ratio=4)
    _randomise_(projection)
    return {k: v.detach().clone().contiguous() for k, v in resampler_state_dict_to_released(projection.state_dict()).items()}


def build_tiny_flux(out_dir: str | Path, *, seed: int = 0, embedding_dim: int = FACE_EMBEDDING_DIM) -> TinyPaths:
    """Write a tiny random FLUX base, InfuseNet-shaped IdentityNet and face projection under ``out_dir``.
    `embedding_dim` 512 is InfiniteYou's (ArcFace); 128 a dlib-path FLUX family (what `--tiny` uses offline).
    The same arguments give the same tensors; the global torch RNG is left untouched."""
    root = Path(out_dir)
    paths = TinyPaths(root, root / "base", root / "InfuseNetModel", root / "image_proj_model.bin")
    root.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(**tiny_flux_transformer_config())
        controlnet = FluxControlNetModel(**tiny_flux_transformer_config(num_layers=1, num_single_layers=1))
        for model in (transformer, controlnet):
            _randomise_(model)
        tokenizer_2 = tiny_t5_tokenizer()
        text_encoder_2 = T5EncoderModel(T5Config(**tiny_t5_config(len(tokenizer_2))))
        clip_config = {**tiny_clip_text_config(), "projection_dim": POOLED_WIDTH}
        pipe = FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(**flux_dev_scheduler_config()),
            vae=AutoencoderKL(**tiny_flux_vae_config()),
            text_encoder=CLIPTextModel(CLIPTextConfig(**clip_config)),
            tokenizer=byte_level_clip_tokenizer(),
            text_encoder_2=text_encoder_2,
            tokenizer_2=tokenizer_2,
            transformer=transformer,
        )
        image_proj = random_resampler_state_dict(embedding_dim=embedding_dim)
    pipe.save_pretrained(paths.base, safe_serialization=True)
    controlnet.register_to_config(_infu_flux_version="1.0")  # the release's extra config key
    controlnet.save_pretrained(paths.identitynet, safe_serialization=True, max_shard_size="200KB")
    torch.save({"image_proj": image_proj}, paths.adapter)
    return paths


def tiny_flux_cached(*, seed: int = 0, embedding_dim: int = FACE_EMBEDDING_DIM,
                     cache_dir: str | Path | None = None) -> TinyPaths:
    """``build_tiny_flux`` once per (seed, embedding_dim), kept under ``cache_dir`` (default
    ``$XDG_CACHE_HOME/instantid/tiny``)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = built_once(cache_dir / f"flux-v{BUILDER_VERSION}-emb{embedding_dim}-seed{seed}",
                        lambda staging: build_tiny_flux(staging, seed=seed, embedding_dim=embedding_dim))
    return TinyPaths(target, target / "base", target / "InfuseNetModel", target / "image_proj_model.bin")


def build_tiny_flux_lora(base_dir: str | Path, out_path: str | Path, *, rank: int = 4, seed: int = 0) -> Path:
    """A random LoRA for the tiny FLUX transformer at `base_dir`, saved as diffusers FLUX LoRA safetensors."""
    transformer = FluxTransformer2DModel.from_pretrained(Path(base_dir) / "transformer")
    layers = random_lora_layers(transformer, rank=rank, seed=seed)
    out_path = Path(out_path)
    FluxPipeline.save_lora_weights(out_path.parent, transformer_lora_layers=layers, weight_name=out_path.name)
    return out_path
