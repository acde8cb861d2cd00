"""IdentityNet: a diffusers ControlNetModel that cross-attends to the face tokens, not the text.

That is the whole difference from an ordinary ControlNet (same config, same weights: the released
`ControlNetModel` folder loads with `IdentityNetModel.from_pretrained`). The InstantID pipeline sets the
call's face tokens with `face_conditioning(...)`; the stock pipeline then calls IdentityNet as any
ControlNet, with the text states, and IdentityNet uses the face tokens in their place (same batch
layout). Other ControlNets beside it keep seeing the text. Outside `face_conditioning` it uses the
states it is given (training passes the face tokens directly).

The call's face inputs live in a context variable (set with a token, reset on exit), never on the model:
two threads, or a call made inside another, each see only their own.

Regions (`IdentityNetRegion`, "enhance face region" and multi-identity, see pipelines/face_region.py):
one ControlNet pass per region, with that region's face tokens, keypoint image and scale, each pass's
residuals multiplied by the region mask resized to the residual's resolution, then summed.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.controlnets.controlnet import ControlNetOutput

from .controlnet_skip import IdleSkippingControlNetModel


@dataclass(frozen=True)
class FaceTokens:
    """Face tokens in the batch layouts the stock pipelines give a ControlNet: `full` as the text states
    ([negatives, positives] under classifier-free guidance), `conditional` the positives alone (guess mode)."""

    full: torch.Tensor
    conditional: torch.Tensor

    @classmethod
    def for_batch(cls, negative: torch.Tensor, positive: torch.Tensor, rows: int, cfg: bool) -> "FaceTokens":
        """From [1, T, C] negative/positive tokens, for `rows` images (before CFG doubles them)."""
        conditional = positive.expand(rows, -1, -1)
        return cls(torch.cat([negative.expand(rows, -1, -1), conditional]) if cfg else conditional, conditional)

    def like(self, states: torch.Tensor) -> torch.Tensor:
        """The tokens for text states of that batch size (same dtype and device)."""
        rows = states.shape[0]
        if rows == self.full.shape[0]:
            return self.full.to(states)
        if rows == self.conditional.shape[0]:
            return self.conditional.to(states)
        raise ValueError(f"IdentityNet got {rows} text rows, but the call's face tokens are laid out for "
                         f"{self.full.shape[0]} (or {self.conditional.shape[0]} in guess mode)")


@dataclass(frozen=True)
class IdentityNetRegion:
    """One region's IdentityNet pass: its mask (any resolution, resized to each residual), scale
    (multiplies the call's), face tokens (None: the call's) and keypoint image (a [1, 3, H, W] tensor
    prepared as the pipeline prepares its control image; None: the call's)."""

    mask: torch.Tensor
    scale: float = 1.0
    tokens: FaceTokens | None = None
    control_image: torch.Tensor | None = None


def resize_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`mask` area-averaged to the spatial size of `like` ([B, C, h, w]), as [1, 1, h, w] in its dtype."""
    return F.interpolate(mask[None, None].float(), size=tuple(like.shape[-2:]), mode="area").to(like)


# id(IdentityNet model) -> (face tokens, regions) of the call running in this context.
_FACE_INPUTS: ContextVar[dict[int, tuple[FaceTokens, tuple[IdentityNetRegion, ...]]]] = ContextVar(
    "instantid_identitynet_face_inputs", default={})


class IdentityNetModel(IdleSkippingControlNetModel):
    """InstantID's IdentityNet (skips idle steps like IdleSkippingControlNetModel)."""

    # The running call's inputs for compiled code, which cannot read the context variable: set by
    # face_conditioning for the call's duration, safe because every InstantID call holds the call lock.
    locked_face_inputs = None

    @contextmanager
    def face_conditioning(self, tokens: FaceTokens, regions: Sequence[IdentityNetRegion] = ()) -> Iterator[None]:
        """One pipeline call's face inputs, for this context only: set on entry, restored on exit."""
        inputs = (tokens, tuple(regions))
        token = _FACE_INPUTS.set({**_FACE_INPUTS.get(), id(self): inputs})
        previous, self.locked_face_inputs = self.locked_face_inputs, inputs
        try:
            yield
        finally:
            self.locked_face_inputs = previous
            _FACE_INPUTS.reset(token)

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale=1.0,
                class_labels=None, timestep_cond=None, attention_mask=None, added_cond_kwargs=None,
                cross_attention_kwargs=None, guess_mode: bool = False, return_dict: bool = True):
        if torch.compiler.is_compiling():  # ContextVar.get cannot be traced; see locked_face_inputs
            face_tokens, regions = self.locked_face_inputs or (None, ())
        else:
            face_tokens, regions = _FACE_INPUTS.get().get(id(self), (None, ()))
        if face_tokens is not None:
            encoder_hidden_states = face_tokens.like(encoder_hidden_states)
        common = dict(class_labels=class_labels, timestep_cond=timestep_cond, attention_mask=attention_mask,
                      added_cond_kwargs=added_cond_kwargs, cross_attention_kwargs=cross_attention_kwargs,
                      guess_mode=guess_mode)
        if not regions:
            return super().forward(sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale,
                                   return_dict=return_dict, **common)
        total_down, total_mid = None, None
        for region in regions:
            states = encoder_hidden_states if region.tokens is None else region.tokens.like(encoder_hidden_states)
            cond = controlnet_cond if region.control_image is None else \
                region.control_image.to(controlnet_cond).expand(controlnet_cond.shape[0], -1, -1, -1)
            down, mid = super().forward(sample, timestep, states, cond, conditioning_scale * region.scale,
                                        return_dict=False, **common)
            down = [d * resize_mask(region.mask, d) for d in down]
            mid = mid * resize_mask(region.mask, mid)
            if total_down is None:
                total_down, total_mid = down, mid
            else:
                total_down = [a + b for a, b in zip(total_down, down)]
                total_mid = total_mid + mid
        if return_dict:
            return ControlNetOutput(down_block_res_samples=tuple(total_down), mid_block_res_sample=total_mid)
        return tuple(total_down), total_mid
