"""The two training stages on FLUX.

Stage 1 (special to the toy): the toy DiT learns the world from captions alone with rectified flow, then
is frozen. Stage 2 (the project's own): `instantid.training.flux` assembles InstantID on the frozen DiT and
`instantid.training.loop.compute_loss` (the FLUX flow-matching loss) is the step, exactly as
`instantid train --family flux` runs it. Two arms, trained separately: IdentityNet (+ the Resampler
feeding it), and IdentityNet + the adapter branch inside the DiT (`--adapter_branch`).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from instantid.training.flux import FlowObjective, assemble_flux_components, image_ids, load_flux_identitynet, pack
from instantid.training.loop import batch_generator, compute_loss

from benchmarks.learning.train import StagePlan, TrainingSet, _fit
from benchmarks.learning.world import EMBEDDING_DIM

from .toy_models import FACE_TOKENS, RESAMPLER_WIDTH, flux_instantid_pipeline, pooled, toy_transformer

ARMS = {"identitynet": False, "identitynet + adapter branch": True}  # arm -> adapter branch


def flux_batch(data: TrainingSet, rng: np.random.Generator, size: int) -> dict:
    """benchmarks.learning's batch plus the pooled text vector FLUX takes."""
    batch = data.batch(rng, size)
    batch["pooled_text"] = pooled(batch["text_states"])
    return batch


def train_base(data: TrainingSet, plan: StagePlan, seed: int, label: str = "base"):
    """Stage 1: the toy DiT draws the world from captions (velocity MSE, uniform noise levels); returned frozen."""
    transformer = toy_transformer(seed)
    rng = np.random.default_rng([seed, 1])

    def loss_at_step(step: int) -> torch.Tensor:
        batch = flux_batch(data, rng, plan.batch_size)
        generator = batch_generator(seed, 1, step)
        latents = batch["latents"]
        noise = torch.randn(latents.shape, generator=generator)
        sigma = torch.rand(len(latents), generator=generator)
        noisy = (1 - sigma.view(-1, 1, 1, 1)) * latents + sigma.view(-1, 1, 1, 1) * noise
        states = batch["text_states"]
        prediction = transformer(hidden_states=pack(noisy), timestep=sigma, pooled_projections=batch["pooled_text"],
                                 encoder_hidden_states=states, txt_ids=torch.zeros(states.shape[1], 3),
                                 img_ids=image_ids(noisy)).sample
        return F.mse_loss(prediction, pack(noise - latents))

    losses = _fit(transformer.parameters(), plan, label, loss_at_step)
    transformer.requires_grad_(False).eval()
    return transformer, losses


def instantid_on(base: torch.nn.Module, adapter_branch: bool, seed: int):
    """The project's trainable FLUX InstantID on a copy of the frozen base (training/flux.py's own assembly)."""
    transformer = toy_transformer(seed)
    transformer.load_state_dict(base.state_dict())
    options = SimpleNamespace(identitynet=None, identitynet_layers=4, identitynet_single_layers=10, seed=seed)
    pipe = flux_instantid_pipeline(transformer, load_flux_identitynet(options, transformer))
    return assemble_flux_components(pipe, EMBEDDING_DIM, torch.float32, "cpu", seed=seed,
                                    resampler_width=RESAMPLER_WIDTH, num_tokens=FACE_TOKENS,
                                    adapter_branch=adapter_branch, objective=FlowObjective())


def train_instantid(base: torch.nn.Module, adapter_branch: bool, data: TrainingSet, plan: StagePlan, seed: int,
                    label: str):
    """Stage 2: IdentityNet, the Resampler (and the adapter branch) on the frozen base, the project's step."""
    components = instantid_on(base, adapter_branch, seed)
    model = components.model
    rng = np.random.default_rng([seed, 2])
    losses = _fit([p for p in model.parameters() if p.requires_grad], plan, label,
                  lambda step: compute_loss(components, model, flux_batch(data, rng, plan.batch_size),
                                            batch_generator(seed, 2, step)))
    model.eval()
    return components, losses
