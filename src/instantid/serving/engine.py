"""The one place the service calls the library: face analysis, loading, one generation.

Everything the API, the UI and the Ray replicas do with models goes through `Engine`, so a change in
the library's entry points (face_condition, generate_from_photos, load_from_args, write_pngs, ...) is a
change here only. A generation is `generate_from_photos`, what `instantid generate` runs: the same inputs
give the same pixels from the CLI, the library and the service.
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
    scheduler: str | None = None  # a name of pipelines/schedulers.py; None: the server's default
    loras: dict | None = None  # server LoRA name -> scale (loras.requested_scales); None: the startup scales
    face_index: int = 0
    face_detail: str = "off"
    face_detail_strength: float | None = None


class Engine:
    """One face analyzer (cached by content hash) and, once `load()` ran, one pipeline.

    `args` is the argparse namespace of `serve`/`ui` (the model options `generate` has). The face analyzer
    is ready at once (submissions are checked before any model loads); the pipeline loads in `load()`.
    """

    def __init__(self, args, face_cache_dir: Path | None = None) -> None:
        from ..cli.common import face_analyzer
        from ..face.cache import CachedFaceAnalyzer

        self.args = args
        self.analyzer = CachedFaceAnalyzer(face_analyzer(args, released_weights=True), cache_dir=face_cache_dir)
        # dlib / onnxruntime sessions are not documented as thread-safe: one detection at a time.
        self._face_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.pipe = None
        self.models: dict = {}
        self.control_kinds: list[str] = list(getattr(args, "controlnet", None) or [])
        from .loras import server_loras

        self.loras = server_loras(list(getattr(args, "lora", None) or []))
        self._base_scheduler = None  # the base model's own, kept to build each job's scheduler from

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
        """The faces generation would see in `photo`, largest first (looking closer for small ones, as
        face_condition does)."""
        from ..face.small_faces import detect_faces

        with self._face_lock:
            return detect_faces(self.analyzer, photo)

    def condition(self, faces: list[Path], pose: Path | None = None, face_index: int = 0):
        """FaceCondition for the photos (raises NoFaceError / ImageReadError, typed, with the photo named)."""
        from ..pipelines.condition import face_condition

        with self._face_lock:
            return face_condition(list(faces), self.analyzer, pose, face_index=face_index)

    def keypoint_image(self, faces, pose=None, face_index: int = 0):
        """The keypoint image InstantID would condition on for these photos (pose photo's largest face, else
        the first face photo's `face_index`-th largest)."""
        condition = self.condition(list(faces), pose, face_index)
        return condition.kps_image(*condition.pose_size)

    def lora_scales(self, text: str | None) -> dict[str, float]:
        """A request's `loras` field as {name: scale} for every LoRA loaded at start (raises UsageError)."""
        from .loras import requested_scales

        return requested_scales(text, self.loras)

    # ---- the pipeline

    @property
    def loaded(self) -> bool:
        return self.pipe is not None

    def load(self) -> None:
        import argparse

        from ..cli.common import load_from_args
        from ..pipelines.conditions import CONDITION_KINDS

        controlnets = [getattr(self.args, f"{kind}_model", None) or CONDITION_KINDS[kind].default_model
                       for kind in self.control_kinds]
        loras = [(lora.spec, lora.scale) for lora in self.loras]
        # Loaded with the base model's scheduler: each job's (--scheduler's or the request's) is built from its
        # config, so a job's sampler never depends on the jobs before it.
        base_args = argparse.Namespace(**{**vars(self.args), "scheduler": None})
        pipe, self.models = load_from_args(base_args, self.analyzer.analyzer, controlnets=controlnets, loras=loras)
        pipe.set_progress_bar_config(disable=True)
        self._base_scheduler = pipe.scheduler
        from ..models.architectures import embedding_size_problem

        problem = embedding_size_problem(self.analyzer.embedding_dim, pipe.face_embedding_dim,
                                         f"the '{self.analyzer.name}' face backend gives")
        if problem:
            raise EmbeddingError(f"{problem}; pass that --face-backend")
        self.pipe = pipe

    def generate(self, inputs: GenerationInputs, on_step: Callable[[int, int], None] | None = None):
        """Run one job. Returns (PIL images, parameters used). `on_step(step, total)` may raise JobCancelled."""
        from ..pipelines.conditions import ExtraControl
        from ..pipelines.from_photos import generate_from_photos

        if self.pipe is None:
            raise RuntimeError("Engine.generate before Engine.load")
        controls = inputs.controls or {}
        unknown = set(controls) - set(self.control_kinds)
        if unknown:
            raise UsageError(f"this server has no {', '.join(sorted(unknown))} ControlNet; start it with "
                             + " ".join(f"--controlnet {kind}" for kind in sorted(unknown)))
        extra, scales = [], {}
        for kind in self.control_kinds:
            if kind in controls:
                photo, scales[kind] = controls[kind]
                extra.append(ExtraControl.of_kind(kind, photo, scales[kind]))
            else:  # an extra ControlNet without a photo this time acts at scale 0, on a black image
                from PIL import Image

                scales[kind] = 0.0
                extra.append(ExtraControl(image=Image.new("RGB", (8, 8)), scale=0.0))
        condition = self.condition(inputs.faces, inputs.pose, inputs.face_index)
        total = inputs.values["num_inference_steps"]

        def step_end(pipe, step, timestep, callback_kwargs):
            if on_step is not None:
                on_step(step + 1, total)
            return callback_kwargs

        if on_step is not None:
            on_step(0, total)
        scheduler = inputs.scheduler or getattr(self.args, "scheduler", None)
        lora_scales = inputs.loras if inputs.loras is not None else self.lora_scales(None)
        with self._run_lock:  # one pipeline, one generation at a time
            self._set_job_options(scheduler, lora_scales)
            result = generate_from_photos(self.pipe, condition, inputs.prompt,
                                          negative_prompt=inputs.negative_prompt or None, style=inputs.style,
                                          controls=extra, callback_on_step_end=step_end,
                                          face_index=inputs.face_index, face_detail=inputs.face_detail,
                                          face_detail_strength=inputs.face_detail_strength, **inputs.values)
        from .loras import as_text

        parameters = {"command": "serve", **result.parameters, "user_prompt": inputs.prompt, "control_scales": scales,
                      "scheduler": scheduler, "scheduler_class": result.parameters["scheduler"],
                      "loras": as_text(lora_scales), "face_backend": self.analyzer.name,
                      "faces": len(inputs.faces), "faces_used": len(condition.faces), "pose": inputs.pose is not None,
                      "skipped": condition.skipped, **self.models}
        return result.images, parameters

    def _set_job_options(self, scheduler: str | None, lora_scales: dict[str, float]) -> None:
        """The job's sampler and LoRA scales, set from scratch every job (the worker runs one job at a time):
        a fresh scheduler from the base model's config, and every startup LoRA's scale (0 = off)."""
        from ..pipelines.schedulers import scheduler_from

        base = self._base_scheduler
        self.pipe.scheduler = scheduler_from(base.config, scheduler) if scheduler else type(base).from_config(base.config)
        if self.loras:
            self.pipe.set_adapters([lora.adapter for lora in self.loras],
                                   adapter_weights=[lora_scales.get(lora.name, 0.0) for lora in self.loras])

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
