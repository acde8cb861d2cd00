"""Noise in the CFG negative face embedding: the "anti-burn" aid of the most used ComfyUI InstantID nodes.

The released pipeline's classifier-free-guidance negative is the Resampler of an all-zeros embedding.
Guidance then pushes the image away from "no face at all", which at normal CFG over-saturates ("burns")
the face. With `negative_face_noise = n > 0` the negative is the Resampler of `n * u`, `u` uniform in
[0, 1), so guidance pushes away from a random face instead: lower contrast and saturation in the face,
more of the prompt's style. Values around 0.35 are the usual starting point; 0 is the released behaviour.

Where `u` comes from: a generator FORKED from the call's generator, seeded by a hash of its state
(nothing is drawn from the call's generator). So
- noise 0.0 leaves everything bit-identical to the released pipeline (nothing is drawn at all);
- noise > 0 does not change the initial latents the stock pipeline draws from the call's generator, so
  the same seed gives the same composition with and without the noise, and exactly the same image twice;
- the noise stream is distinct from the latent stream (a different seed, not the same draws).
With no generator the fork is seeded from torch's global RNG state (again without advancing it).
"""

from __future__ import annotations

import hashlib

import torch

from .call_checks import check_knob

# Salt mixed into the fork's seed so the noise never replays the latent stream of the same seed.
_FORK_SALT = b"instantid/negative_face_noise"


def forked_generator(generator=None) -> torch.Generator:
    """A CPU generator seeded deterministically from `generator`'s current state (or torch's global one),
    without drawing from it. A list of generators (one per image) forks the first."""
    if isinstance(generator, (list, tuple)):
        generator = generator[0] if generator else None
    state = generator.get_state() if generator is not None else torch.get_rng_state()
    digest = hashlib.sha256(_FORK_SALT + state.cpu().numpy().tobytes()).digest()
    return torch.Generator("cpu").manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def negative_face_embedding(positive: torch.Tensor, noise: float = 0.0, generator=None) -> torch.Tensor:
    """The CFG negative for face embedding(s) `positive` ([batch, ...]): zeros (noise 0, as released), else
    `noise * u` with `u` ~ U[0, 1) from a generator forked from `generator` (see the module docstring),
    one draw shared by the whole batch (IdentityNet and the adapter then see the same negative)."""
    noise = float(check_knob("negative_face_noise", noise))  # the parameter table's range
    if noise == 0.0:
        return torch.zeros_like(positive)
    u = torch.rand((1, *positive.shape[1:]), generator=forked_generator(generator), dtype=torch.float32)
    return (noise * u).to(device=positive.device, dtype=positive.dtype).expand_as(positive)
