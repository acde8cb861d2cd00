"""Validation images during training, made by the inference pipeline itself (no second sampler).

Fixed inputs (face embedding, keypoints, prompt, seed) for the whole run, so images of different steps
compare. Faces come from `--validation_image` photos (analysed with the dataset's face backend) or,
by default, from the first dataset items.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.face_paths import FLUX, for_family
from ..pipelines.condition import FaceCondition, face_condition
from ..pipelines.flux import FluxInstantIDMixin
from .data import make_buckets, nearest_bucket
from .flux import DEFAULT_VALIDATION_GUIDANCE as FLUX_VALIDATION_GUIDANCE

DEFAULT_VALIDATION_GUIDANCE = 5.0  # SDXL / SD1.5

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationCase:
    name: str
    prompt: str
    condition: FaceCondition


def validation_cases(args, dataset) -> list[ValidationCase]:
    """The fixed validation inputs: photos given on the command line, else the first dataset items."""
    prompts = args.validation_prompt or []
    if args.validation_image:
        from ..face import get_face_analyzer

        kwargs = {"model_dir": args.face_models} if dataset.backend == "antelopev2" and args.face_models else {}
        analyzer = get_face_analyzer(dataset.backend, **kwargs)
        cases = []
        for i, photo in enumerate(args.validation_image):
            prompt = prompts[i] if len(prompts) > 1 else (prompts[0] if prompts else "a photo of a person")
            cases.append(ValidationCase(Path(photo).stem, prompt, face_condition(photo, analyzer)))
        return cases
    cases = []
    for i, item in enumerate(dataset.items[: args.num_validation_items]):
        prompt = prompts[i] if len(prompts) > 1 else (prompts[0] if prompts else item.caption)
        embedding = getattr(item, "embedding", None)  # a shard sample carries it, a manifest row names its file
        embedding = (np.load(item.embedding_file) if embedding is None else embedding).astype(np.float32).reshape(-1)
        condition = FaceCondition(embedding=embedding, kps=item.kps, pose_size=(item.width, item.height))
        cases.append(ValidationCase(item.id, prompt, condition))
    return cases


def validation_size(condition: FaceCondition, resolution: int, step: int) -> tuple[int, int]:
    """The training bucket the pose photo would fall in: sizes the model was trained at."""
    return nearest_bucket(*condition.pose_size, make_buckets(resolution, step, max_aspect_ratio=2.0))


def run_validation(accelerator, pipe, cases: list[ValidationCase], global_step: int, args, resolution: int,
                   bucket_step: int) -> list:
    """Generate one image per case with the current weights; save them and send them to the trackers."""
    folder = Path(args.output_dir) / "validation" / f"step-{global_step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i, case in enumerate(cases):
        width, height = validation_size(case.condition, resolution, bucket_step)
        control = pipe.control_image_argument  # FLUX pipelines call it control_image
        embedding = case.condition.embedding
        guidance = args.validation_guidance_scale
        if isinstance(pipe, FluxInstantIDMixin):  # the unit-norm face path, as trained (training/flux.py)
            embedding = for_family(FLUX, embedding)
            guidance = FLUX_VALIDATION_GUIDANCE if guidance is None else guidance
        with accelerator.autocast():
            image = pipe(prompt=case.prompt, image_embeds=embedding,
                         **{control: case.condition.kps_image(width, height)}, width=width, height=height,
                         num_inference_steps=args.validation_inference_steps,
                         guidance_scale=DEFAULT_VALIDATION_GUIDANCE if guidance is None else guidance,
                         generator=torch.Generator("cpu").manual_seed(args.seed + i)).images[0]
        image.save(folder / f"{i:02d}-{case.name}.png")
        images.append(image)
    log_images(accelerator, images, cases, global_step)
    logger.info("validation images for step %d in %s", global_step, folder)
    return images


def log_images(accelerator, images, cases, global_step: int) -> None:
    """Send the validation images to the TensorBoard tracker, if the run has one."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for i, (image, case) in enumerate(zip(images, cases)):
                tracker.writer.add_image(f"validation/{i:02d}", np.asarray(image), global_step, dataformats="HWC")
