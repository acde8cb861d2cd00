"""The face adapter's scale for one pipeline call, without touching the shared attention processors.

diffusers' IP-Adapter processors read their `scale` attribute at every attention call, and
`set_ip_adapter_scale` sets it on processors that every pipeline sharing the UNet (`from_pipe` variants)
sees. A call's own scale (`ip_adapter_scale=`, the per-face factors of regions) must not be seen by another
call running at the same time, nor stay behind after the call. So the face adapter's processors are declared
once, at load time, as `CallScaled` subclasses of diffusers' own classes (same weights, same attention code),
whose `scale` reads the scale of the call running in this context (a context variable set with a token and
reset on exit), falling back to the processor's own scale (set_ip_adapter_scale's, the lasting default).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Sequence

import torch

from ..errors import RegionError

# id(processor) -> its scale list in the call running in this context.
_CALL_SCALES: ContextVar[dict[int, list]] = ContextVar("instantid_adapter_call_scales", default={})
_SUBCLASSES: dict[type, type] = {}


class CallScaled:
    """Mixin for a diffusers IP-Adapter processor: `scale` is the running call's, else the processor's own."""

    # torch.compile cannot trace ContextVar.get (it would break the UNet's graph at every attention layer), so
    # compiled code reads the same scale from `locked_call_scale`, which `_scales` sets for the call's duration.
    # That is safe only because every InstantID call holds the UNet's call lock (pipelines/instantid.call_lock).
    locked_call_scale = None

    @property
    def scale(self):
        if torch.compiler.is_compiling():
            return self.default_scale if self.locked_call_scale is None else self.locked_call_scale
        return _CALL_SCALES.get().get(id(self), self.default_scale)

    @scale.setter
    def scale(self, value) -> None:  # set_ip_adapter_scale and the processor's __init__ set the lasting default
        self.default_scale = value


def call_scaled_class(cls: type) -> type:
    """`cls` (a diffusers IP-Adapter processor class) with a per-call scale."""
    if issubclass(cls, CallScaled):
        return cls
    if cls not in _SUBCLASSES:
        _SUBCLASSES[cls] = type(f"CallScaled{cls.__name__}", (CallScaled, cls), {})
    return _SUBCLASSES[cls]


def face_adapter_processors(unet: torch.nn.Module) -> list:
    return [p for p in unet.attn_processors.values() if hasattr(p, "to_k_ip")]


def install_call_scaled_processors(unet: torch.nn.Module) -> None:
    """Declare the UNet's IP-Adapter processors as their CallScaled twins (the very same weights; idempotent)."""
    processors = dict(unet.attn_processors)
    changed = False
    for name, processor in processors.items():
        if not hasattr(processor, "to_k_ip") or isinstance(processor, CallScaled):
            continue
        cls = call_scaled_class(type(processor))
        with torch.device("meta"):
            twin = cls(processor.hidden_size, processor.cross_attention_dim, processor.num_tokens, processor.scale)
        twin.load_state_dict(processor.state_dict(keep_vars=True), assign=True)
        processors[name], changed = twin, True
    if changed:
        unet.set_attn_processor(processors)


@contextmanager
def _scales(scales: dict[int, list], processors: Sequence) -> Iterator[None]:
    """The call's scales (by processor id) in this context, and on the processors for compiled code (see CallScaled)."""
    token = _CALL_SCALES.set({**_CALL_SCALES.get(), **scales})
    saved = [(processor, processor.locked_call_scale) for processor in processors]
    for processor in processors:
        processor.locked_call_scale = scales[id(processor)]
    try:
        yield
    finally:
        for processor, previous in reversed(saved):
            processor.locked_call_scale = previous
        _CALL_SCALES.reset(token)


def _scaled_processors(unet: torch.nn.Module) -> list:
    processors = face_adapter_processors(unet)
    plain = [type(p).__name__ for p in processors if not isinstance(p, CallScaled)]
    if plain:
        raise TypeError(f"the face adapter's processors ({plain[0]}) have no per-call scale: load the adapter with "
                        "load_ip_adapter_instantid")
    return processors


@contextmanager
def adapter_scale(unet: torch.nn.Module, scale) -> Iterator[None]:
    """`scale` (a number, or one per loaded adapter) for the calls in this context only."""
    if scale is None:
        yield
        return
    wanted = list(scale) if isinstance(scale, (list, tuple)) else [scale]
    calls, processors = {}, _scaled_processors(unet)
    for processor in processors:
        own = processor.scale
        if len(wanted) not in (1, len(own)):
            raise ValueError(f"{len(wanted)} adapter scales for {len(own)} loaded adapters")
        calls[id(processor)] = [float(s) for s in wanted] * (len(own) if len(wanted) == 1 else 1)
    with _scales(calls, processors):
        yield


@contextmanager
def per_face_scales(unet: torch.nn.Module, factors: Sequence[float]) -> Iterator[None]:
    """Each masked face "image" of the (single) face adapter scaled by its factor, on top of the call's scale,
    for the calls in this context only. ValueError when the UNet holds several adapters."""
    calls, processors = {}, _scaled_processors(unet)
    for processor in processors:
        own = processor.scale
        if len(own) != 1 or isinstance(own[0], list):
            raise RegionError("regions need exactly one face adapter with a single scale; unload other IP-Adapters first")
        calls[id(processor)] = [[own[0] * float(f) for f in factors]]
    with _scales(calls, processors):
        yield
