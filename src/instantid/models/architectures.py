"""Facts of the architectures InstantID runs on, as model code needs them: the released face adapter's
Resampler hyper-parameters and ``ip-adapter.bin`` key->shape map (derived from a UNet), the released
IdentityNet's keypoint encoder, and which base family (SDXL or SD1.5) a model belongs to.

Configs of whole test models (tiny and full-size random SDXL) live in ``instantid.testing.architectures``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

# Resampler hyper-parameters fixed by the released checkpoint: 64-d heads, 4x feed-forward,
# 4 blocks, 16 query tokens, 512-d face embedding in. Its width (1280 released, 128 tiny)
# is the free parameter; heads = width // 64.
RESAMPLER_DIM_HEAD = 64
RESAMPLER_FF_MULT = 4
RESAMPLER_DEPTH = 4
RESAMPLER_NUM_TOKENS = 16
FACE_EMBEDDING_DIM = 512
RELEASED_RESAMPLER_WIDTH = 1280

# SDXL's added-condition vector = 6 time ids (size, crop, target size) each embedded with
# addition_time_embed_dim, plus text_encoder_2's pooled projection.
SDXL_NUM_TIME_IDS = 6

# IdentityNet's keypoint image: RGB in, encoded by these channels per level as released
# (``ControlNetModel/config.json``); a new IdentityNet needs one level per VAE level (4 for SD/SDXL VAEs).
IDENTITYNET_CONDITIONING_CHANNELS = 3
RELEASED_CONDITIONING_CHANNELS = (16, 32, 96, 256)

# Face embedding size per face backend; the adapter's Resampler takes one of them (proj_in's input).
BACKEND_EMBEDDING_DIMS = {"antelopev2": FACE_EMBEDDING_DIM, "dlib": 128}


def embedding_size_problem(size: int, expected: int, source: str = "the face embedding has") -> str | None:
    """The one check that face embeddings fit an adapter, as a message (None when they fit): every place
    that compares them (library entries, training) raises its own error type with this text."""
    if int(size) == int(expected):
        return None
    known = ", ".join(f"{name} gives {dim}" for name, dim in BACKEND_EMBEDDING_DIMS.items())
    return (f"{source} {int(size)}-d face embeddings but the adapter takes {int(expected)}-d ones ({known}): use "
            "the face backend the adapter was trained with (the released SDXL weights need antelopev2, FLUX's "
            "infiniteyou)")


# Base families.
SDXL, SD15 = "sdxl", "sd15"


def family_of_config(config: Mapping[str, Any] | Any) -> str:
    """SDXL or SD15, from a UNet's or ControlNet's config (a dict or a diffusers FrozenDict): SDXL adds the
    pooled text and time ids ("text_time" added embedding). The one place this is decided."""
    get = config.get if hasattr(config, "get") else lambda key, default=None: getattr(config, key, default)
    return SDXL if get("addition_embed_type", None) == "text_time" else SD15


def family_of_pipeline(pipe) -> str:
    """SDXL or SD15 for a loaded pipeline, from its UNet's config; "flux" for a FLUX (DiT) pipeline."""
    if getattr(pipe, "unet", None) is None and getattr(pipe, "transformer", None) is not None:
        return "flux"
    return family_of_config(pipe.unet.config)


def cross_attention_modules(unet: UNet2DConditionModel) -> dict[int, object]:
    """Processor position -> Attention module, for the cross-attentions (``attn2``) of ``unet``,
    in diffusers' ``unet.attn_processors`` order: the position is the released key's index."""
    found = {}
    for position, processor_name in enumerate(unet.attn_processors):
        if processor_name.endswith("attn2.processor"):
            found[position] = unet.get_submodule(processor_name.removesuffix(".processor"))
    return found


def released_adapter_shapes(
    unet: UNet2DConditionModel,
    *,
    embedding_dim: int = FACE_EMBEDDING_DIM,
    resampler_width: int = RELEASED_RESAMPLER_WIDTH,
    resampler_depth: int = RESAMPLER_DEPTH,
    num_tokens: int = RESAMPLER_NUM_TOKENS,
) -> dict[str, dict[str, tuple[int, ...]]]:
    """Key -> shape of ``ip-adapter.bin`` for ``unet``, in the released layout:
    ``{"image_proj": {...Resampler...}, "ip_adapter": {"{idx}.to_k_ip.weight": ..., ...}}``.

    The Resampler outputs ``num_tokens`` tokens of the UNet's cross-attention width; each
    ``to_k_ip``/``to_v_ip`` maps that width to its attention's inner (key) dimension.
    Defaults give the released shapes (width 1280, 20 heads, 512-d input).
    """
    if resampler_width % RESAMPLER_DIM_HEAD:
        raise ValueError(f"resampler_width must be a multiple of {RESAMPLER_DIM_HEAD}")
    width, hidden = resampler_width, resampler_width * RESAMPLER_FF_MULT
    out_dim = unet.config.cross_attention_dim
    image_proj = {
        "latents": (1, num_tokens, width),
        "proj_in.weight": (width, embedding_dim),
        "proj_in.bias": (width,),
        "proj_out.weight": (out_dim, width),
        "proj_out.bias": (out_dim,),
        "norm_out.weight": (out_dim,),
        "norm_out.bias": (out_dim,),
    }
    for i in range(resampler_depth):
        attention, feed_forward = f"layers.{i}.0", f"layers.{i}.1"
        for norm in ("norm1", "norm2"):  # norm1: the input tokens, norm2: the latents
            image_proj[f"{attention}.{norm}.weight"] = (width,)
            image_proj[f"{attention}.{norm}.bias"] = (width,)
        image_proj[f"{attention}.to_q.weight"] = (width, width)
        image_proj[f"{attention}.to_kv.weight"] = (2 * width, width)
        image_proj[f"{attention}.to_out.weight"] = (width, width)
        # Sequential(LayerNorm, Linear, GELU, Linear): indices 0, 1, 3 hold parameters.
        image_proj[f"{feed_forward}.0.weight"] = (width,)
        image_proj[f"{feed_forward}.0.bias"] = (width,)
        image_proj[f"{feed_forward}.1.weight"] = (hidden, width)
        image_proj[f"{feed_forward}.3.weight"] = (width, hidden)

    ip_adapter = {}
    for position, attn in cross_attention_modules(unet).items():
        shape = (attn.to_k.out_features, attn.to_k.in_features)
        ip_adapter[f"{position}.to_k_ip.weight"] = shape
        ip_adapter[f"{position}.to_v_ip.weight"] = shape
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}
