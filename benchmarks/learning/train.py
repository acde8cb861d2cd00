"""The two training stages of the toy experiment.

Stage 1 (special to the toy): the base UNet learns the world from captions alone, then is frozen.
Stage 2 (the project's own): `instantid.training` assembles the trainable InstantID on the frozen base
and its `compute_loss` is the step, exactly as `instantid train` runs it. The arms of the paper's
ablation (Fig. 9) are trained separately: the face adapter alone (no IdentityNet), IdentityNet alone
(the adapter's decoupled attention at strength 0; the projection still trains, it feeds IdentityNet),
and both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from instantid.face import get_reference_face
from instantid.models.architectures import SD15, cross_attention_modules
from instantid.training.loop import batch_generator, compute_loss
from instantid.training.model import InstantIDTrainingModel, assemble_components
from instantid.training.references import IdentityGroups, ReferenceMode, pick_reference

from .toy_models import FACE_TOKENS, RESAMPLER_WIDTH, ToyTextEncoder, instantid_pipeline, toy_unet, training_scheduler
from .world import EMBEDDING_DIM, Picture, ToyRecognizer, keypoint_image

ARMS = {"adapter": ("adapter",), "identitynet": ("identitynet",), "both": ("adapter", "identitynet")}


@dataclass
class TrainingSet:
    """Pictures as tensors: pixels in [-1, 1], caption states, keypoint images in [0, 1], face embeddings."""

    pixels: torch.Tensor
    text_states: torch.Tensor
    kps_images: torch.Tensor
    face_embeddings: torch.Tensor
    people: list[int] | None = None  # identity labels, for paired references

    @classmethod
    def from_pictures(cls, pictures: list[Picture], text: ToyTextEncoder, recognizer: ToyRecognizer) -> "TrainingSet":
        states = text.colour_states()
        pixels = np.stack([p.pixels for p in pictures]).astype(np.float32) / 127.5 - 1
        kps = np.stack([keypoint_image(p.kps) for p in pictures]).astype(np.float32) / 255
        embeddings = np.stack([get_reference_face(p.pixels, analyzer=recognizer).embedding for p in pictures])
        return cls(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(),
                   torch.stack([states[p.colour] for p in pictures]),
                   torch.from_numpy(kps).permute(0, 3, 1, 2).contiguous(),
                   torch.from_numpy(embeddings), [p.person for p in pictures])

    def batch(self, rng: np.random.Generator, size: int, references: "References | None" = None) -> dict:
        """A batch in the layout `instantid.training.loop.compute_loss` reads (latents = pixels here). With
        `references`, each sample's face embedding is picked by the project's `pick_reference` (keypoints
        stay the target's)."""
        index = torch.from_numpy(rng.choice(len(self.pixels), size=size, replace=False))
        face_index = index if references is None else torch.tensor(
            [pick_reference(references.mode, references.groups, int(i), references.rng) for i in index])
        return {"latents": self.pixels[index], "text_states": self.text_states[index],
                "kps_image": self.kps_images[index], "face_embedding": self.face_embeddings[face_index],
                "time_ids": torch.zeros(size, 6)}  # SDXL's size ids; unused by an SD1.5-family base


@dataclass
class References:
    """How stage 2 picks each sample's reference: `instantid.training.references` on the world's labels."""

    mode: ReferenceMode
    groups: IdentityGroups
    rng: np.random.Generator

    @classmethod
    def for_data(cls, data: TrainingSet, mode: str, seed: int) -> "References | None":
        parsed = ReferenceMode.parse(mode)
        return cls(parsed, IdentityGroups(data.people), np.random.default_rng([seed, 6])) if parsed.pairs else None


@dataclass
class StagePlan:
    steps: int
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup: int = 50


def _fit(parameters, plan: StagePlan, label: str, loss_at_step) -> list[float]:
    """AdamW with a linear warm-up over `plan.steps` steps of `loss_at_step(step)`; the losses."""
    optimizer = torch.optim.AdamW(parameters, lr=plan.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / plan.warmup))
    losses = []
    for step in tqdm(range(plan.steps), desc=label, mininterval=10):
        loss = loss_at_step(step)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def train_base(data: TrainingSet, plan: StagePlan, seed: int, label: str = "base") -> tuple[torch.nn.Module, list[float]]:
    """Stage 1: a base that draws the world from captions (v-prediction MSE), returned frozen."""
    unet = toy_unet(seed)
    scheduler = training_scheduler()
    rng = np.random.default_rng([seed, 1])

    def loss_at_step(step: int) -> torch.Tensor:
        batch = data.batch(rng, plan.batch_size)
        generator = batch_generator(seed, 1, step)
        latents = batch["latents"]
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
        prediction = unet(scheduler.add_noise(latents, noise, timesteps), timesteps, batch["text_states"]).sample
        return F.mse_loss(prediction, scheduler.get_velocity(latents, noise, timesteps))

    losses = _fit(unet.parameters(), plan, label, loss_at_step)
    unet.requires_grad_(False).eval()
    return unet, losses


def instantid_on(base: torch.nn.Module, arms: tuple[str, ...], seed: int):
    """The project's trainable InstantID on a copy of the frozen base, restricted to `arms`.
    Returns (training components, the model whose forward is trained)."""
    unet = toy_unet(seed)
    unet.load_state_dict(base.state_dict())
    pipe = instantid_pipeline(unet)
    components = assemble_components(pipe, SD15, EMBEDDING_DIM, torch.float32, "cpu", seed=seed,
                                     resampler_width=RESAMPLER_WIDTH, num_tokens=FACE_TOKENS)
    model = components.model
    if "identitynet" not in arms:
        pipe.controlnet.requires_grad_(False)
        model = InstantIDTrainingModel(pipe.unet, None)
    if "adapter" not in arms:
        for attn in cross_attention_modules(pipe.unet).values():
            attn.processor.requires_grad_(False)
        pipe.set_ip_adapter_scale(0.0)
    return components, model


def train_instantid(base: torch.nn.Module, arms: tuple[str, ...], data: TrainingSet, plan: StagePlan, seed: int,
                    label: str, reference: str = "same") -> tuple[object, list[float]]:
    """Stage 2: train `arms` on the frozen base with the project's training step; `reference` is the
    trainer's `--reference` (same, other, mixed:P)."""
    components, model = instantid_on(base, arms, seed)
    rng = np.random.default_rng([seed, 2])
    references = References.for_data(data, reference, seed)
    losses = _fit([p for p in model.parameters() if p.requires_grad], plan, label,
                  lambda step: compute_loss(components, model, data.batch(rng, plan.batch_size, references),
                                            batch_generator(seed, 2, step)))
    components.pipe.controlnet.eval()
    components.pipe.unet.eval()
    return components, losses
