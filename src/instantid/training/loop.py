"""The training step (eq. 4 of the paper: noise-prediction MSE with the face conditions) and the loop.

Randomness: each micro-batch draws its noise, timesteps and condition dropout from a generator seeded
by (seed, process, micro-batch number), and the data order is a function of (seed, epoch). A resumed
run therefore needs nothing but the step count to continue exactly where it stopped.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .conditioning import added_conditions, encode_captions, encode_images
from .flux import FLUX, compute_flux_loss
from .model import TrainingComponents

logger = logging.getLogger(__name__)


# Stream of the fixed-batch loss draws: a "process index" no process has, so it never repeats training noise.
FIXED_BATCH_STREAM = 2**32 - 1


def batch_generator(seed: int, process_index: int, micro_step: int) -> torch.Generator:
    """The CPU generator of one micro-batch: independent streams per process and per batch."""
    state = np.random.SeedSequence([seed, process_index, micro_step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _to(device, batch: dict, *keys) -> dict:
    return {key: batch[key].to(device) for key in keys if key in batch}


def compute_loss(components: TrainingComponents, model, batch: dict, generator: torch.Generator, *,
                 text_dropout: float = 0.0, face_dropout: float = 0.0, empty_text: dict | None = None) -> torch.Tensor:
    """MSE between the noise (or v) target and InstantID's prediction for one batch (FLUX: training/flux.py's
    flow-matching loss)."""
    if components.family == FLUX:
        return compute_flux_loss(components, model, batch, generator, text_dropout=text_dropout,
                                 face_dropout=face_dropout, empty_text=empty_text)
    device = components.unet.device
    latents = batch["latents"].to(device) if "latents" in batch else encode_images(components.vae, batch["pixel_values"])
    if "text_states" in batch:
        text = _to(device, batch, "text_states", "pooled_text")
    else:
        text = encode_captions(components.pipe, components.family, batch["caption"], device)
    faces = batch["face_embedding"].to(device)

    size = latents.shape[0]
    scheduler = components.noise_scheduler
    noise = torch.randn(latents.shape, generator=generator).to(device)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (size,), generator=generator).to(device)
    drop_text, drop_face = (torch.rand(2, size, generator=generator) < torch.tensor([[text_dropout], [face_dropout]]))
    text, faces = _drop_conditions(text, faces, drop_text.to(device), drop_face.to(device), empty_text)

    noisy = scheduler.add_noise(latents, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    prediction = model(noisy, timesteps, text["text_states"], faces, batch["kps_image"].to(device),
                       added_conditions(components.family, text, batch["time_ids"].to(device)))
    return F.mse_loss(prediction.float(), target.float())


def _drop_conditions(text: dict, faces, drop_text, drop_face, empty_text: dict | None):
    """Samples with dropped text get the empty caption's embedding; dropped faces become zeros (the CFG negative)."""
    if drop_face.any():
        faces = torch.where(drop_face[:, None], torch.zeros_like(faces), faces)
    if drop_text.any():
        if empty_text is None:
            raise ValueError("text dropout needs the empty caption's embedding")
        text = {key: torch.where(drop_text.view(-1, *[1] * (value.dim() - 1)), empty_text[key].to(value), value)
                for key, value in text.items()}
    return text, faces


@torch.no_grad()
def fixed_batch_loss(components: TrainingComponents, batch: dict, seed: int, draws: int = 4) -> float:
    """Loss of the unwrapped model on one batch, averaged over `draws` fixed noise/timestep draws:
    comparable between any two points of training."""
    losses = [compute_loss(components, components.model, batch, batch_generator(seed, FIXED_BATCH_STREAM, draw)).item()
              for draw in range(draws)]
    return float(np.mean(losses))


@dataclass
class StepPlan:
    max_train_steps: int
    batches_per_epoch: int  # per process
    gradient_accumulation_steps: int

    @classmethod
    def from_args(cls, args, batches_per_epoch: int) -> "StepPlan":
        updates_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
        total = args.max_train_steps or args.num_train_epochs * updates_per_epoch
        return cls(total, batches_per_epoch, args.gradient_accumulation_steps)

    def position(self, global_step: int) -> tuple[int, int, int]:
        """(epoch, batches to skip in it, micro-batch number) where `global_step` optimizer steps end."""
        consumed = global_step * self.gradient_accumulation_steps
        epoch, skip = divmod(consumed, self.batches_per_epoch)
        return epoch, skip, consumed


@dataclass
class LoopOutcome:
    losses: list[float] = field(default_factory=list)  # per optimizer step (mean over processes)


def run_loop(accelerator, components: TrainingComponents, model, optimizer, lr_scheduler, loader, sampler,
             progress, plan: StepPlan, args, after_step: Callable[[int], None], empty_text: dict | None,
             on_loss: Callable[[int, float], None] | None = None) -> LoopOutcome:
    """Train until `plan.max_train_steps`; `on_loss(global_step, loss)` then `after_step(global_step)` run after
    every optimizer step."""
    from tqdm.auto import tqdm

    outcome = LoopOutcome()
    epoch, skip, micro_step = plan.position(progress.global_step)
    trainable = [p for p in model.parameters() if p.requires_grad]
    bar = tqdm(total=plan.max_train_steps, initial=progress.global_step, desc="training",
               disable=not accelerator.is_local_main_process)
    accumulated = []
    while progress.global_step < plan.max_train_steps:
        sampler.set_epoch(epoch, skip)
        for batch in loader:
            generator = batch_generator(args.seed, accelerator.process_index, micro_step)
            micro_step += 1
            progress.observe(batch)
            with accelerator.accumulate(model):
                loss = compute_loss(components, model, batch, generator, text_dropout=args.text_dropout,
                                    face_dropout=args.face_dropout, empty_text=empty_text)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            accumulated.append(loss.detach())
            if not accelerator.sync_gradients:
                continue
            step_loss = accelerator.gather(torch.stack(accumulated).mean()[None]).mean().item()
            accumulated = []
            progress.global_step += 1
            outcome.losses.append(step_loss)
            if on_loss is not None:
                on_loss(progress.global_step, step_loss)
            bar.update()
            bar.set_postfix(loss=f"{step_loss:.4f}")
            accelerator.log({"loss": step_loss, "lr": lr_scheduler.get_last_lr()[0]}, step=progress.global_step)
            after_step(progress.global_step)
            if progress.global_step >= plan.max_train_steps:
                break
        epoch, skip = epoch + 1, 0
    bar.close()
    return outcome
