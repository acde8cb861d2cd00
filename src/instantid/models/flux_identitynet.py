"""IdentityNet for FLUX (InfiniteYou's "InfuseNet"): a diffusers FluxControlNetModel that sees the face
tokens instead of the text, and the FLUX DiT that goes with it.

The stock `FluxControlNetPipeline` calls its ControlNet each step with the T5 text states, zero text ids,
and the DiT's guidance value; it then adds the residuals to the DiT's cond pass *and* its true-CFG
negative pass. InfiniteYou differs in three places, each declared here rather than in a copied loop:

- `FluxIdentityNetModel` swaps in the call's face tokens (and zero ids of their length) for the text and
  feeds its guidance embedding InfiniteYou's fixed value (1.0), whatever the DiT's guidance is;
- it skips the steps outside its control window (scale 0): zero residuals added to the DiT leave it
  bit-identical, as `IdleSkippingControlNetModel` does for the UNet ControlNets;
- `FluxIdentityTransformer2DModel` leaves the IdentityNet residuals out of the true-CFG negative pass
  (InfiniteYou's uncond pass runs without them). It knows that pass by the stock loop's order: each step
  calls IdentityNet once, then the DiT's cond pass, then (true CFG only) its negative pass. Tensor identity
  would not do: offload hooks hand each model its own copies of the inputs.

The call's inputs live in a context variable set by `flux_face_conditioning` for one pipeline call, so
two threads running calls never see each other's faces. Outside a call both models are stock.
"""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch
from diffusers import FluxControlNetModel, FluxTransformer2DModel
from diffusers.models.controlnets.controlnet_flux import FluxControlNetOutput

from .controlnet_skip import is_zero_scale
from .flux_face_adapter import face_adapter_kwargs, has_face_adapter

# InfiniteYou's wrapper feeds InfuseNet's guidance embedding this value, not the DiT's guidance.
INFUSENET_GUIDANCE = 1.0


class FluxFaceConditioning:
    """One call's IdentityNet inputs: `tokens` [1, T, D] (expanded to the call's rows), the guidance value
    for IdentityNet's guidance embedding, and how many DiT passes of the current step still take IdentityNet's
    residuals (1 after IdentityNet runs: the cond pass). With the optional adapter branch in the DiT
    (models/flux_face_adapter.py), `adapter_negative` holds the tokens of no face (the Resampler of a zero
    embedding) for the passes without residuals (true CFG's negative). Made per call; used by one thread."""

    __slots__ = ("tokens", "guidance", "passes_with_residuals", "adapter_negative")

    def __init__(self, tokens: torch.Tensor, guidance: float = INFUSENET_GUIDANCE,
                 adapter_negative: torch.Tensor | None = None) -> None:
        if tokens.ndim != 3 or tokens.shape[0] != 1:
            raise ValueError(f"face tokens must be [1, tokens, width], got {tuple(tokens.shape)}")
        self.tokens = tokens
        self.guidance = float(guidance)
        self.passes_with_residuals = 0
        self.adapter_negative = adapter_negative

    def tokens_like(self, states: torch.Tensor, negative: bool = False) -> torch.Tensor:
        """The face tokens (or, `negative`, the no-face ones) for text states of that batch (same dtype and device)."""
        tokens = self.adapter_negative if negative and self.adapter_negative is not None else self.tokens
        return tokens.to(states).expand(states.shape[0], -1, -1)


_CONDITIONING: ContextVar[FluxFaceConditioning | None] = ContextVar("instantid_flux_face", default=None)


@contextmanager
def flux_face_conditioning(conditioning: FluxFaceConditioning) -> Iterator[FluxFaceConditioning]:
    """The scope of one pipeline call: inside it IdentityNet and the DiT follow InfiniteYou's rules."""
    token = _CONDITIONING.set(conditioning)
    try:
        yield conditioning
    finally:
        _CONDITIONING.reset(token)


def view_as(cls, model):
    """`model` as the subclass `cls`: a new object that shares its modules, parameters, buffers, config and
    any quantized or offloaded weights (nothing is copied or re-initialised); `model` itself is unchanged."""
    if isinstance(model, cls):
        return model
    if not isinstance(model, cls._stock_class):
        raise TypeError(f"{cls.__name__} views a {cls._stock_class.__name__}, got a {type(model).__name__}")
    if "forward" in vars(model):
        raise TypeError(f"the {type(model).__name__} already carries an instance-level forward (an offload or "
                        "compile hook); build the InstantID pipeline first, then enable offloading or compile")
    view = copy.copy(model)  # a new object over the same submodule / parameter / buffer dicts
    view.__class__ = cls
    return view


class _SavedAsStock:
    """Saved as the stock class, so any diffusers install loads what this package saves."""

    _stock_class: type

    def to_json_string(self) -> str:
        config = json.loads(super().to_json_string())
        config["_class_name"] = self._stock_class.__name__
        return json.dumps(config, indent=2, sort_keys=True) + "\n"


class FluxIdentityNetModel(_SavedAsStock, FluxControlNetModel):
    """InfiniteYou's InfuseNet as IdentityNet: the released `InfuseNetModel/` folder loads with it."""

    _stock_class = FluxControlNetModel
    skip_idle_steps: bool = True

    @classmethod
    def sharing(cls, controlnet: FluxControlNetModel) -> "FluxIdentityNetModel":
        return view_as(cls, controlnet)

    def zero_residuals(self, hidden_states: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Zeros shaped, typed and placed as a run's residuals: one [B, image tokens, width] per block."""
        batch, tokens = hidden_states.shape[:2]
        dtype = self.x_embedder.weight.dtype
        width = self.inner_dim
        double = [hidden_states.new_zeros((batch, tokens, width), dtype=dtype) for _ in self.controlnet_blocks]
        single = [hidden_states.new_zeros((batch, tokens, width), dtype=dtype) for _ in self.controlnet_single_blocks]
        return double or None, single or None

    def forward(self, hidden_states, controlnet_cond, controlnet_mode=None, conditioning_scale=1.0,
                encoder_hidden_states=None, pooled_projections=None, timestep=None, img_ids=None, txt_ids=None,
                guidance=None, joint_attention_kwargs=None, return_dict: bool = True):
        conditioning = _CONDITIONING.get()
        if conditioning is not None:
            conditioning.passes_with_residuals = 1  # this step's cond pass; a true-CFG pass after it gets none
        if self.skip_idle_steps and is_zero_scale(conditioning_scale):
            double, single = self.zero_residuals(hidden_states)
            return FluxControlNetOutput(double, single) if return_dict else (double, single)
        if conditioning is not None:
            encoder_hidden_states = conditioning.tokens_like(encoder_hidden_states)
            txt_ids = txt_ids.new_zeros((encoder_hidden_states.shape[1], 3))
            if guidance is not None:
                guidance = torch.full_like(guidance, conditioning.guidance)
        return super().forward(hidden_states, controlnet_cond, controlnet_mode=controlnet_mode,
                               conditioning_scale=conditioning_scale, encoder_hidden_states=encoder_hidden_states,
                               pooled_projections=pooled_projections, timestep=timestep, img_ids=img_ids,
                               txt_ids=txt_ids, guidance=guidance, joint_attention_kwargs=joint_attention_kwargs,
                               return_dict=return_dict)


class FluxIdentityTransformer2DModel(_SavedAsStock, FluxTransformer2DModel):
    """The FLUX DiT, stock except that inside an InstantID call its true-CFG negative pass gets no
    IdentityNet residuals (InfiniteYou's rule)."""

    _stock_class = FluxTransformer2DModel

    @classmethod
    def sharing(cls, transformer: FluxTransformer2DModel) -> "FluxIdentityTransformer2DModel":
        return view_as(cls, transformer)

    def forward(self, hidden_states, encoder_hidden_states=None, pooled_projections=None, timestep=None,
                img_ids=None, txt_ids=None, guidance=None, joint_attention_kwargs=None,
                controlnet_block_samples=None, controlnet_single_block_samples=None, return_dict: bool = True,
                controlnet_blocks_repeat: bool = False):
        conditioning = _CONDITIONING.get()
        if conditioning is not None:
            negative_pass = conditioning.passes_with_residuals <= 0
            if negative_pass:
                controlnet_block_samples = controlnet_single_block_samples = None
            else:
                conditioning.passes_with_residuals -= 1
            if has_face_adapter(self):  # the optional adapter branch reads the face tokens (no face when negative)
                face = conditioning.tokens_like(encoder_hidden_states, negative=negative_pass)
                joint_attention_kwargs = {**(joint_attention_kwargs or {}), **face_adapter_kwargs(face)}
        return super().forward(hidden_states, encoder_hidden_states=encoder_hidden_states,
                               pooled_projections=pooled_projections, timestep=timestep, img_ids=img_ids,
                               txt_ids=txt_ids, guidance=guidance, joint_attention_kwargs=joint_attention_kwargs,
                               controlnet_block_samples=controlnet_block_samples,
                               controlnet_single_block_samples=controlnet_single_block_samples,
                               return_dict=return_dict, controlnet_blocks_repeat=controlnet_blocks_repeat)
