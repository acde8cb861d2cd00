"""The one place the service calls the library: face analysis, loading, one generation.

Everything the API, the UI and the Ray replicas do with models goes through `Engine`, so a change in
the library's entry points (face_condition, load_from_args, write_pngs, ...) is a change here only.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import EmbeddingError, UsageError

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised from the step callback to stop a generation that was cancelled."""


@dataclass
class GenerationInputs:
    """A validated request: generation values (params.py names), text, and photo paths in the job folder."""

    values: dict
    prompt: str
    negative_prompt: str
    style: str
    faces: list[Path]
    pose: Path | None = None
    controls: dict | None = None  # ControlNet kind -> (photo path, scale)


class Engine:
    """One face analyzer (cached by content hash) and, once `load()` ran, one pipeline.

    `args` is the argparse namespace of `serve`/`ui` (the model options `generate` has). The face analyzer
    is ready at once (submissions are checked before any model loads); the pipeline loads in `load()`.
    """

    def __init__(self, args, face_cache_dir: Path | None = None) -> None:
        from ..cli.common import face_analyzer
        from ..face.cache import CachedFaceAnalyzer

        self.args = args
        self.analyzer = CachedFaceAnalyzer(face_analyzer(args), cache_dir=face_cache_dir)
        # dlib / onnxruntime sessions are not documented as thread-safe: one detection at a time.
        self._face_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.pipe = None
        self.models: dict = {}
        self.control_kinds: list[str] = list(getattr(args, "controlnet", None) or [])

    def resolve_values(self, given: dict) -> dict:
        """Generation values: given, else --tiny's, else the parameter table's defaults (as the CLI does)."""
        import argparse

        from ..cli.common import generation_values
        from ..params import GENERATION_PARAMS

        given = {param.name: given.get(param.name) for param in GENERATION_PARAMS}
        for param in GENERATION_PARAMS:  # the table's own check (range, finite, integer), as the CLI's
            if given[param.name] is not None:
                param.check(given[param.name])
        return generation_values(argparse.Namespace(tiny=bool(getattr(self.args, "tiny", False)), **given))

    # ---- face analysis (cheap; used to check requests before they are queued)

    def faces(self, photo) -> list:
        with self._face_lock:
            return self.analyzer.detect(photo)

    def condition(self, faces: list[Path], pose: Path | None = None):
        """FaceCondition for the photos (raises NoFaceError / ImageReadError, typed, with the photo named)."""
        from ..pipelines.from_photos import face_condition

        with self._face_lock:
            return face_condition(list(faces), self.analyzer, pose)

    def keypoint_image(self, photo):
        """The keypoint image InstantID would condition on for this photo (largest face)."""
        condition = self.condition([photo])
        return condition.kps_image(*condition.pose_size)

    # ---- the pipeline

    @property
    def loaded(self) -> bool:
        return self.pipe is not None

    def load(self) -> None:
        from ..cli.common import load_from_args
        from ..cli.generate import _parse_lora
        from ..pipelines.conditions import CONDITION_KINDS

        controlnets = [getattr(self.args, f"{kind}_model", None) or CONDITION_KINDS[kind].default_model
                       for kind in self.control_kinds]
        loras = [_parse_lora(spec) for spec in (getattr(self.args, "lora", None) or [])]
        pipe, self.models = load_from_args(self.args, self.analyzer.analyzer, controlnets=controlnets, loras=loras)
        pipe.set_progress_bar_config(disable=True)
        if self.analyzer.embedding_dim != pipe.face_embedding_dim:
            raise EmbeddingError(
                f"the '{self.analyzer.name}' face backend gives {self.analyzer.embedding_dim}-d embeddings but the "
                f"adapter takes {pipe.face_embedding_dim}-d ones; pass the --face-backend the adapter was trained with")
        self.pipe = pipe

    def generate(self, inputs: GenerationInputs, on_step: Callable[[int, int], None] | None = None):
        """Run one job. Returns (PIL images, parameters used). `on_step(step, total)` may raise JobCancelled."""
        import torch

        from ..cli.output import finite_images
        from ..face.image import load_image
        from ..pipelines.conditions import CONDITION_KINDS
        from ..pipelines.styles import get_style

        if self.pipe is None:
            raise RuntimeError("Engine.generate before Engine.load")
        values = dict(inputs.values)
        condition = self.condition(inputs.faces, inputs.pose)
        width, height = condition.output_size(values.pop("width"), values.pop("height"))
        prompt, negative = get_style(inputs.style).apply(inputs.prompt, inputs.negative_prompt or None)
        seed = values.pop("seed")
        call = dict(values)
        kps_image = condition.kps_image(width, height)
        image = kps_image
        controls = inputs.controls or {}
        unknown = set(controls) - set(self.control_kinds)
        if unknown:
            raise UsageError(f"this server has no {', '.join(sorted(unknown))} ControlNet; start it with "
                             + " ".join(f"--controlnet {kind}" for kind in sorted(unknown)))
        scales = {}
        if self.control_kinds:
            from PIL import Image

            images = [kps_image]
            for kind in self.control_kinds:
                if kind in controls:  # an extra ControlNet without a photo this time acts at scale 0
                    photo, scale = controls[kind]
                    images.append(CONDITION_KINDS[kind].annotate(load_image(photo), (width, height)))
                else:
                    scale = 0.0
                    images.append(Image.new("RGB", (width, height)))
                scales[kind] = scale
            image = images
            call["controlnet_conditioning_scale"] = [values["controlnet_conditioning_scale"], *scales.values()]
            call["control_guidance_start"] = [values["control_guidance_start"]] + [0.0] * len(scales)
            call["control_guidance_end"] = [values["control_guidance_end"]] + [1.0] * len(scales)
        total = values["num_inference_steps"]

        def step_end(pipe, step, timestep, callback_kwargs):
            if on_step is not None:
                on_step(step + 1, total)
            return callback_kwargs

        if on_step is not None:
            on_step(0, total)
        with self._run_lock:  # one pipeline, one generation at a time
            output = self.pipe(prompt=prompt, negative_prompt=negative or None, image_embeds=condition.embedding,
                               image=image, width=width, height=height,
                               generator=torch.Generator("cpu").manual_seed(seed),
                               callback_on_step_end=step_end, output_type="np", **call)
        images = finite_images(output.images)  # NaN is an error, never a black image
        parameters = {"command": "serve", "prompt": prompt, "negative_prompt": negative, "style": inputs.style,
                      "user_prompt": inputs.prompt, "seed": seed, "width": width, "height": height, **values,
                      "control_scales": scales, "loras": list(getattr(self.args, "lora", None) or []),
                      "scheduler": type(self.pipe.scheduler).__name__, "face_backend": self.analyzer.name,
                      "faces": len(inputs.faces), "faces_used": len(condition.faces), "pose": inputs.pose is not None,
                      "skipped": condition.skipped, **self.models}
        return images, parameters

    @staticmethod
    def save_pngs(images, parameters: dict, folder: Path) -> list[Path]:
        """PNG files with the `parameters` text chunk, as the CLI writes them (0.png, 1.png, ... in order)."""
        from ..cli.common import write_pngs

        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(io.StringIO()):  # write_pngs prints each path for the CLI
            written = write_pngs(images, str(folder) + "/", parameters)
        paths = []
        for index, path in enumerate(written):
            target = folder / f"{index}.png"
            path.replace(target)
            paths.append(target)
        return paths
