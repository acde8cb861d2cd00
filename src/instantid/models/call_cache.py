"""Compute once per pipeline call what every denoising step would recompute from the same inputs.

Within one call, three things depend only on inputs that are the very same tensor at every step:
the face tokens (the Resampler, which the stock UNet runs at each step), the face keys/values of
each decoupled cross-attention (`to_k_ip` / `to_v_ip`), and the keys/values of each
cross-attention over the text or face tokens (`to_k` / `to_v` of `attn2`, in the UNet and in
IdentityNet). While `constant_inputs_computed_once(...)` is active, each of these modules returns
its earlier output when it gets the same input object again, unmodified (same tensor version): the
result is bit-identical, and ~500 small operations per step are gone (kernel launches on a GPU,
matmuls bound by reading the weights on a CPU).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch

# Outputs kept per module: one input per call is the rule; a few more cover callers that alternate
# (and bound the memory when an input is new at every step, e.g. a per-step mask).
ENTRIES_PER_MODULE = 4


def _tensor_key(value) -> tuple | None:
    """Identity of a tensor (or a list/tuple of tensors) and of its contents' version, or None
    (not tensors, or inference-mode tensors, which have no version counter to detect edits)."""
    try:
        if isinstance(value, torch.Tensor):
            return (id(value), value._version)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
            return tuple((id(v), v._version) for v in value)
    except RuntimeError:
        return None
    return None


def constant_input_modules(unet, controlnets: Iterable[torch.nn.Module] = ()) -> list[torch.nn.Module]:
    """The modules whose input stays the same tensor over a call: the UNet's face projection, and
    the key/value projections of every cross-attention in the UNet and the ControlNets."""
    from diffusers.models.attention_processor import Attention

    modules = []
    projection = getattr(unet, "encoder_hid_proj", None)
    if projection is not None and getattr(unet.config, "encoder_hid_dim_type", None) == "ip_image_proj":
        modules.append(projection)
    for model in (unet, *controlnets):
        for attention in model.modules():
            if not isinstance(attention, Attention) or not attention.is_cross_attention or attention.norm_cross:
                continue  # self-attention sees new latents each step; norm_cross makes a new tensor
            modules += [attention.to_k, attention.to_v]
            for name in ("to_k_ip", "to_v_ip"):
                modules += list(getattr(attention.processor, name, []))
    return modules


@contextmanager
def constant_inputs_computed_once(modules: Iterable[torch.nn.Module]) -> Iterator[dict]:
    """While active, each module in `modules` reuses its output for an input it has already seen.

    Only single-argument calls without gradients are cached; anything else runs as usual.
    Yields counters {"computed": n, "reused": n}.
    """
    counts = {"computed": 0, "reused": 0}
    restored = []
    for module in modules:
        had_instance_forward = "forward" in module.__dict__
        previous = module.forward
        # key -> (input, output); holding the input keeps its id from being reused by a new tensor
        cache: OrderedDict[tuple, tuple] = OrderedDict()

        def forward(*args, _previous=previous, _cache=cache, **kwargs):
            key = _tensor_key(args[0]) if len(args) == 1 and not kwargs else None
            if key is None or torch.is_grad_enabled():
                return _previous(*args, **kwargs)
            hit = _cache.get(key)
            if hit is not None:
                counts["reused"] += 1
                return hit[1]
            output = _previous(args[0])
            counts["computed"] += 1
            _cache[key] = (args[0], output)
            if len(_cache) > ENTRIES_PER_MODULE:
                _cache.popitem(last=False)
            return output

        module.forward = forward
        restored.append((module, had_instance_forward, previous, cache))
    try:
        yield counts
    finally:
        for module, had_instance_forward, previous, cache in restored:
            cache.clear()
            if had_instance_forward:
                module.forward = previous
            else:
                del module.forward
