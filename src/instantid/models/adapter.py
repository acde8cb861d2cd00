"""The face adapter checkpoint (`ip-adapter.bin` or its safetensors variant): safe loading and
shape checks against a UNet. Loading into the UNet itself is diffusers' IP-Adapter loader's job."""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError

AdapterStateDict = dict[str, dict[str, torch.Tensor]]
PARTS = ("image_proj", "ip_adapter")
_RESAMPLER_REQUIRED = ("latents", "proj_in.weight", "proj_out.weight", "norm_out.weight", "layers.0.0.to_q.weight")
_ATTN_HEAD_DIM = 64  # the Resampler's heads are 64-d in every released checkpoint


@dataclass(frozen=True)
class ResamplerShape:
    """Resampler hyper-parameters, read from the checkpoint's tensor shapes."""

    embedding_dim: int
    width: int
    num_tokens: int
    heads: int
    depth: int
    output_dim: int


# Rank of each Resampler tensor the shapes are read from (a wrong rank would fail deep inside indexing).
_RESAMPLER_RANKS = {"latents": 3, "proj_in.weight": 2, "proj_out.weight": 2, "norm_out.weight": 1,
                    "layers.0.0.to_q.weight": 2}


def resampler_shape(image_proj: dict[str, torch.Tensor]) -> ResamplerShape:
    missing = [k for k in _RESAMPLER_REQUIRED if k not in image_proj]
    if missing:
        raise CheckpointError(
            f"the adapter's image_proj is not an InstantID Resampler: missing {missing}. "
            "Expected the released ip-adapter.bin layout (latents, proj_in, layers.N..., proj_out, norm_out)."
        )
    wrong = [f"{key} has shape {tuple(image_proj[key].shape)} ({rank}-d expected)"
             for key, rank in _RESAMPLER_RANKS.items() if image_proj[key].dim() != rank]
    if wrong or image_proj["latents"].shape[0] != 1:
        raise CheckpointError(f"the adapter's image_proj tensors have the wrong shapes ({'; '.join(wrong) or 'latents must be [1, tokens, width]'}); "
                              "this is not an InstantID Resampler checkpoint")
    layer_ids = {int(m.group(1)) for k in image_proj if (m := re.match(r"layers\.(\d+)\.", k))}
    latents = image_proj["latents"]
    return ResamplerShape(
        embedding_dim=int(image_proj["proj_in.weight"].shape[1]),
        width=int(latents.shape[2]),
        num_tokens=int(latents.shape[1]),
        heads=int(image_proj["layers.0.0.to_q.weight"].shape[0]) // _ATTN_HEAD_DIM,
        depth=len(layer_ids),
        output_dim=int(image_proj["proj_out.weight"].shape[0]),
    )


def _split_prefixed(flat: dict[str, torch.Tensor], source: Path) -> AdapterStateDict:
    """{"image_proj.x": t, "ip_adapter.y": t} -> {"image_proj": {"x": t}, "ip_adapter": {"y": t}}."""
    out: AdapterStateDict = {part: {} for part in PARTS}
    for key, tensor in flat.items():
        part, _, rest = key.partition(".")
        if part not in out or not rest:
            raise CheckpointError(
                f"{source}: key '{key}' has neither an 'image_proj.' nor an 'ip_adapter.' prefix; "
                "this is not an InstantID adapter in the safetensors layout"
            )
        out[part][rest] = tensor
    return out


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format
_PICKLE_PROTOCOL = b"\x80"  # legacy torch.save / plain pickle


def check_adapter_file_header(path: Path) -> None:
    """Refuse, from its first bytes, a file that is no adapter checkpoint at all (e.g. text, an HTML error page)."""
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(8)
    if path.suffix == ".safetensors":
        if len(head) < 8 or int.from_bytes(head, "little") > path.stat().st_size:
            raise CheckpointError(f"{path}: not a safetensors file (its header length is wrong); download it again")
        return
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTOCOL)):
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (it starts with {head[:4]!r}, neither a zip archive nor a pickle): pass "
            "the released ip-adapter.bin or an adapter .safetensors file")


def _load_pickle_safely(path: Path) -> object:
    check_adapter_file_header(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses anything but tensors and plain containers: code in a pickle lands here.
        raise CheckpointError(
            f"{path}: refused to load: the pickle holds objects other than tensors ({str(err).splitlines()[0]}). "
            "Only plain tensor checkpoints are loaded; convert it to .safetensors with a tool you trust."
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({err.__class__.__name__}: {str(err)[:200]}); "
            "the file may be truncated or corrupt: download it again"
        ) from err


def load_adapter_state_dict(path: str | Path) -> AdapterStateDict:
    """Read `ip-adapter.bin` (torch.save of {"image_proj", "ip_adapter"}) or the prefixed .safetensors."""
    from ..checks import check_input_file

    path = check_input_file(path, "adapter checkpoint", error=CheckpointError)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state_dict = _split_prefixed(load_file(path), path)
        except SafetensorError as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err}); download it again") from err
    else:
        state_dict = _load_pickle_safely(path)
    if isinstance(state_dict, dict) and set(state_dict) == {"image_proj"}:
        raise CheckpointError(f"{path} is InfiniteYou's FLUX face projection (image_proj_model.bin: a Resampler and no "
                              "UNet adapter weights); load it into FluxInstantIDPipeline (--family flux), not an "
                              "SDXL/SD1.5 pipeline")
    check_adapter_layout(state_dict, path)
    resampler_shape(state_dict["image_proj"])  # the Resampler's keys and tensor ranks
    return state_dict


def _check_parts(state_dict, source) -> None:
    if not isinstance(state_dict, dict) or set(state_dict) != set(PARTS):
        keys = sorted(map(str, state_dict))[:6] if isinstance(state_dict, dict) else type(state_dict).__name__
        raise CheckpointError(f"{source}: expected a dict with exactly the keys {list(PARTS)} (the released "
                              f"ip-adapter.bin layout), got {keys}")


def check_adapter_layout(state_dict, source="the adapter state dict") -> None:
    """The released layout, every tensor checked once: exactly {"image_proj", "ip_adapter"}, each a dict of
    finite floating-point tensors (load_adapter_state_dict applies it to a file; a dict given as is needs it)."""
    _check_parts(state_dict, source)
    check_adapter_values(state_dict, source)


def check_adapter_values(state_dict: AdapterStateDict, source="the adapter", parts=PARTS) -> None:
    """Each part a dict of floating-point tensors, all finite: NaN/inf weights would give black images."""
    for part in parts:
        entries = state_dict[part]
        if not isinstance(entries, dict):
            raise CheckpointError(f"{source}: '{part}' holds a {type(entries).__name__}, not a dict of named tensors "
                                  "(the released ip-adapter.bin layout)")
        bad = [k for k, v in entries.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{source}: {part} entries that are not tensors: {bad[:5]}")
        not_float = [k for k, v in entries.items() if not v.is_floating_point()]
        if not_float:
            raise CheckpointError(f"{source}: {part} tensors that are not floating point: {not_float[:5]}")
        not_finite = [k for k, v in entries.items() if v.device.type != "meta" and not torch.isfinite(v).all()]
        if not_finite:
            raise CheckpointError(f"{source}: {part} tensors with NaN or infinite values: {not_finite[:5]}; the "
                                  "checkpoint is damaged (or training diverged): use an earlier one")


def cross_attention_widths(unet) -> dict[int, int]:
    """Processor position (the `{idx}` of `{idx}.to_k_ip.weight`) -> inner width of that cross-attention."""
    from .architectures import cross_attention_modules

    return {idx: int(attn.to_k.out_features) for idx, attn in cross_attention_modules(unet).items()}


def check_adapter_fits_unet(state_dict: AdapterStateDict, unet) -> ResamplerShape:
    """Refuse, naming the mismatch, an adapter whose shapes don't fit `unet`. Works on meta tensors; the tensors'
    values are check_adapter_layout's (applied when the dict is read)."""
    _check_parts(state_dict, "the adapter state dict")
    shape = resampler_shape(state_dict["image_proj"])
    cross_dim = unet.config.cross_attention_dim
    if shape.output_dim != cross_dim:
        raise CheckpointError(
            f"the adapter does not fit this base model: its Resampler outputs {shape.output_dim}-d face tokens, "
            f"but the UNet's cross-attention width is {cross_dim} (SDXL is 2048, SD1.5 768). "
            "Use an adapter trained for this base model family."
        )
    widths = cross_attention_widths(unet)
    expected = {f"{i}.{kv}.weight": (w, shape.output_dim) for i, w in widths.items() for kv in ("to_k_ip", "to_v_ip")}
    found = {k: tuple(v.shape) for k, v in state_dict["ip_adapter"].items()}
    missing = sorted(set(expected) - set(found), key=_natural)
    unexpected = sorted(set(found) - set(expected), key=_natural)
    wrong = [f"{k}: {found[k]} (UNet needs {expected[k]})" for k in sorted(set(found) & set(expected), key=_natural)
             if found[k] != expected[k]]
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            problems.append(f"{len(wrong)} with wrong shapes (e.g. {wrong[:2]})")
        raise CheckpointError(
            f"the adapter's ip_adapter weights do not fit this UNet ({len(expected)} tensors expected for its "
            f"{len(widths)} cross-attention layers, {len(found)} found): " + "; ".join(problems)
            + ". Is the adapter for another base model architecture?"
        )
    return shape


def _natural(key: str) -> tuple:
    head, _, rest = key.partition(".")
    return (int(head), rest) if head.isdigit() else (1 << 30, key)


# ---- export: from the adapter diffusers holds in a UNet back to the released layout ----------------
# diffusers renames the released Resampler keys when it loads them (IP-Adapter-Plus projection). The
# table below is that renaming, per Resampler block, written once so both directions come from it.
# (released suffix after "layers.{i}.", diffusers suffix after "layers.{i}.")
_RESAMPLER_BLOCK_RENAMES = (
    ("0.norm1.weight", "ln0.weight"),
    ("0.norm1.bias", "ln0.bias"),
    ("0.norm2.weight", "ln1.weight"),
    ("0.norm2.bias", "ln1.bias"),
    ("0.to_q.weight", "attn.to_q.weight"),
    ("0.to_out.weight", "attn.to_out.0.weight"),
    ("1.0.weight", "ff.0.weight"),
    ("1.0.bias", "ff.0.bias"),
    ("1.1.weight", "ff.1.net.0.proj.weight"),
    ("1.3.weight", "ff.1.net.2.weight"),
)
# The released block keeps keys and values in one matrix; diffusers splits it in two halves.
_RELEASED_KV, _DIFFUSERS_K, _DIFFUSERS_V = "0.to_kv.weight", "attn.to_k.weight", "attn.to_v.weight"
_RESAMPLER_TOP_LEVEL = ("latents", "proj_in.weight", "proj_in.bias", "proj_out.weight", "proj_out.bias",
                        "norm_out.weight", "norm_out.bias")


def _split_block_key(key: str) -> tuple[int, str] | None:
    match = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
    return (int(match.group(1)), match.group(2)) if match else None


def resampler_state_dict_to_released(diffusers_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' `IPAdapterPlusImageProjection` state dict -> the released `image_proj` key names."""
    to_released = {d: r for r, d in _RESAMPLER_BLOCK_RENAMES}
    out: dict[str, torch.Tensor] = {}
    halves: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in diffusers_state.items():
        if key in _RESAMPLER_TOP_LEVEL:
            out[key] = tensor
            continue
        block = _split_block_key(key)
        if block and block[1] in to_released:
            out[f"layers.{block[0]}.{to_released[block[1]]}"] = tensor
        elif block and block[1] in (_DIFFUSERS_K, _DIFFUSERS_V):
            halves.setdefault(block[0], {})[block[1]] = tensor
        else:
            raise CheckpointError(f"cannot export Resampler key '{key}': not part of the InstantID Resampler layout")
    for index, pair in halves.items():
        if set(pair) != {_DIFFUSERS_K, _DIFFUSERS_V}:
            raise CheckpointError(f"Resampler block {index} has only {sorted(pair)}; to_k and to_v are both needed")
        out[f"layers.{index}.{_RELEASED_KV}"] = torch.cat([pair[_DIFFUSERS_K], pair[_DIFFUSERS_V]], dim=0)
    return out


def resampler_state_dict_to_diffusers(released_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The released `image_proj` key names -> diffusers' `IPAdapterPlusImageProjection` state dict
    (the same renaming diffusers' loader does, usable to copy weights into an existing projection)."""
    to_diffusers = dict(_RESAMPLER_BLOCK_RENAMES)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in released_state.items():
        if key in _RESAMPLER_TOP_LEVEL:
            out[key] = tensor
            continue
        block = _split_block_key(key)
        if block and block[1] in to_diffusers:
            out[f"layers.{block[0]}.{to_diffusers[block[1]]}"] = tensor
        elif block and block[1] == _RELEASED_KV:
            keys, values = tensor.chunk(2, dim=0)
            out[f"layers.{block[0]}.{_DIFFUSERS_K}"] = keys
            out[f"layers.{block[0]}.{_DIFFUSERS_V}"] = values
        else:
            raise CheckpointError(f"image_proj key '{key}' is not part of the InstantID Resampler layout")
    return out


def _face_adapter_parts(unet) -> tuple[torch.nn.Module, dict[int, torch.nn.Module]]:
    """(the Resampler, {released position: IP-Adapter attention processor}) of a UNet holding one adapter."""
    from .architectures import cross_attention_modules

    projection = getattr(unet, "encoder_hid_proj", None)
    layers = getattr(projection, "image_projection_layers", None)
    if layers is None or len(layers) != 1:
        raise CheckpointError("the UNet holds no single face adapter: load one with pipe.load_ip_adapter_instantid first")
    processors = {}
    for position, attn in cross_attention_modules(unet).items():
        if not hasattr(attn.processor, "to_k_ip") or len(attn.processor.to_k_ip) != 1:
            raise CheckpointError(f"cross-attention {position} has no (single) IP-Adapter processor; "
                                  "load the face adapter before exporting it")
        processors[position] = attn.processor
    return layers[0], processors


def adapter_state_dict_from_unet(unet) -> AdapterStateDict:
    """The face adapter a UNet holds (loaded by diffusers' IP-Adapter loader), in the released
    `ip-adapter.bin` layout: detached CPU copies, so `load_ip_adapter_instantid` reads them back exactly."""
    projection, processors = _face_adapter_parts(unet)
    image_proj = resampler_state_dict_to_released(projection.state_dict())
    ip_adapter = {}
    for position, processor in processors.items():
        ip_adapter[f"{position}.to_k_ip.weight"] = processor.to_k_ip[0].weight
        ip_adapter[f"{position}.to_v_ip.weight"] = processor.to_v_ip[0].weight
    return {part: {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
            for part, tensors in (("image_proj", image_proj), ("ip_adapter", ip_adapter))}


def copy_adapter_into_unet_(unet, state_dict: AdapterStateDict) -> None:
    """Overwrite, in place, the face adapter weights a UNet holds with a released-layout state dict.

    Unlike loading anew, the parameter objects stay the same, so an optimizer holding them keeps working
    (used when resuming training)."""
    check_adapter_layout(state_dict)  # any dict: it becomes the weights being trained
    check_adapter_fits_unet(state_dict, unet)
    projection, processors = _face_adapter_parts(unet)
    projection.load_state_dict(resampler_state_dict_to_diffusers(state_dict["image_proj"]), strict=True)
    with torch.no_grad():
        for position, processor in processors.items():
            processor.to_k_ip[0].weight.copy_(state_dict["ip_adapter"][f"{position}.to_k_ip.weight"])
            processor.to_v_ip[0].weight.copy_(state_dict["ip_adapter"][f"{position}.to_v_ip.weight"])


def save_adapter_state_dict(state_dict: AdapterStateDict, path: str | Path) -> Path:
    """Write `ip-adapter.bin` (torch.save of {"image_proj", "ip_adapter"}) or, for a `.safetensors`
    path, the community variant with `image_proj.` / `ip_adapter.` key prefixes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({f"{part}.{k}": v.contiguous() for part in PARTS for k, v in state_dict[part].items()}, str(path))
    else:
        torch.save({part: dict(state_dict[part]) for part in PARTS}, path)
    return path
