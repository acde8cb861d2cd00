"""IdentityNet: a stock diffusers ControlNetModel that cross-attends to the face tokens, not the text.

That is the whole difference from an ordinary ControlNet, so it is one forward pre-hook on the
unmodified model, active only inside a `with` block. Other ControlNets beside it keep seeing text.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

# (batch size of the text states the pipeline passed, the call's kwargs) -> face tokens for that batch
FaceTokenSource = Callable[[int, dict], torch.Tensor]

_ENCODER_STATES_POSITION = 2  # ControlNetModel.forward(sample, timestep, encoder_hidden_states, ...)


@contextmanager
def identitynet_face_tokens(controlnet: torch.nn.Module, tokens_for_batch: FaceTokenSource) -> Iterator[None]:
    """While active, every call of `controlnet` gets face tokens as its `encoder_hidden_states`."""

    def swap_text_for_face_tokens(module, args, kwargs):
        if "encoder_hidden_states" in kwargs:
            text = kwargs["encoder_hidden_states"]
            kwargs["encoder_hidden_states"] = tokens_for_batch(text.shape[0], kwargs).to(text)
        else:
            text = args[_ENCODER_STATES_POSITION]
            faces = tokens_for_batch(text.shape[0], kwargs).to(text)
            args = args[:_ENCODER_STATES_POSITION] + (faces,) + args[_ENCODER_STATES_POSITION + 1 :]
        return args, kwargs

    handle = controlnet.register_forward_pre_hook(swap_text_for_face_tokens, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
