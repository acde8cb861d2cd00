"""Held-out generation through the project's FLUX InstantID pipeline; scoring is benchmarks.learning's judge."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import FluxPipeline
from PIL import Image

from instantid.models.flux_face_adapter import has_face_adapter, set_face_adapter_scale
from instantid.training.flux import pack

from benchmarks.learning.evaluate import HeldOutTask
from benchmarks.learning.toy_models import ToyTextEncoder
from benchmarks.learning.world import PEOPLE, SIZE, ToyRecognizer, keypoint_image

from .toy_models import pooled


@torch.no_grad()
def generate(pipe, task: HeldOutTask, text: ToyTextEncoder, recognizer: ToyRecognizer, *, adapter_scale: float,
             identitynet_scale: float, references: int = 1, steps: int = 20) -> torch.Tensor:
    """Pictures in [-1, 1], [pairs x poses, 3, 16, 16], in the order of `task.targets()` (same poses, noise and
    references as benchmarks.learning's variants; the FLUX sampler is the pipeline's Euler flow)."""
    if has_face_adapter(pipe.transformer):
        set_face_adapter_scale(pipe.transformer, adapter_scale)
    states = text.colour_states()
    out = []
    for person, colour in task.pairs:
        poses = task.poses[person, colour]
        kps = [Image.fromarray(keypoint_image(pose.keypoints(PEOPLE[person].face_width))) for pose in poses]
        embedding = task.reference_embedding(recognizer, person, references)
        prompt = states[colour].expand(len(poses), -1, -1)
        result = pipe(prompt_embeds=prompt, pooled_prompt_embeds=pooled(prompt), control_image=kps,
                      image_embeds=embedding / np.linalg.norm(embedding),  # the FLUX face path is unit-norm
                      latents=pack(task.noise[person, colour].clone()), num_inference_steps=steps,
                      height=SIZE, width=SIZE, output_type="latent", controlnet_conditioning_scale=identitynet_scale)
        out.append(FluxPipeline._unpack_latents(result.images, SIZE, SIZE, vae_scale_factor=1))
    if has_face_adapter(pipe.transformer):
        set_face_adapter_scale(pipe.transformer, 1.0)
    return torch.cat(out).clamp(-1, 1)
