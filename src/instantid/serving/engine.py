"""The one place the service calls the library: face analysis, loading, one generation.

Everything the API, the UI and the Ray replicas do with models goes through `Engine`, so a change in
the library's entry points (face_condition, generate_from_photos, load_pipeline, write_images, ...) is a
change here only. A generation is `generate_from_photos`, what `instantid generate` runs: the same inputs
give the same pixels from the CLI, the library and the service.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..errors import EmbeddingError, UsageError
from ..pipelines.loading import LoadOptions
from .schemas import JobRequest

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised from the step callback to stop a generation that was cancelled."""


@dataclass(frozen=True)
class EngineConfig:
    """What a server loads. `load.controlnets` are the models of `control_kinds`, in that order; `load.loras` the
    LoRAs requests choose among by name; `load.scheduler` the default sampler of jobs that name none."""

    load: LoadOptions = LoadOptions()
    face_backend: str = "auto"  # params.FACE_BACKEND_CHOICES
    face_models: str | None = None
    arcface: str | None = None  # facexlib's ArcFace weights, for the FLUX family's face path
    control_kinds: tuple[str, ...] = ()  # extra ControlNet kinds (pipelines.conditions.CONDITION_KINDS)

    def __post_init__(self) -> None:
        if len(self.control_kinds) != len(self.load.controlnets):
            raise ValueError("EngineConfig: one ControlNet model per control kind")


class Engine:
    """One face analyzer (cached by content hash) and, once `load()` ran, one pipeline.

    The face analyzer is ready at once (submissions are checked before any model loads); the pipeline loads
    in `load()`.
    """

    def __init__(self, config: EngineConfig, face_cache_dir: Path | None = None) -> None:
        from ..face.backend_rule import analyzer_for
        from ..face.cache import CachedFaceAnalyzer
        from .loras import server_loras

        self.config = config
        self.family = config.load.resolved_family()
        analyzer = analyzer_for(config.face_backend, config.face_models, released_weights=True, tiny=config.load.tiny,
                                family=self.family, arcface=config.arcface)
        self.analyzer = CachedFaceAnalyzer(analyzer, cache_dir=face_cache_dir)
        # dlib / onnxruntime sessions are not documented as thread-safe: one detection at a time.
        self._face_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.pipe = None
        self.control_kinds: list[str] = list(config.control_kinds)
        self.loras = server_loras(config.load.loras)
        # the models as the user named them, never a path on this server (job parameters go to every client)
        self.models: dict = config.load.model_names(local_paths=False)
        self._base_scheduler = None  # the base model's own, kept to build each job's scheduler from

    @property
    def default_scheduler(self) -> str | None:
        return self.config.load.scheduler

    def check_request(self, given: dict) -> tuple[dict, dict]:
        """A request's (generation values, per-job knobs): given, else --tiny's, else the parameter table's
        defaults, checked as the CLI checks them (pipelines/request.check_request), errors naming the fields."""
        from ..pipelines.request import check_request

        return check_request(given, family=self.family, tiny=self.config.load.tiny, field_names=True)

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
        from ..models.architectures import embedding_size_problem
        from ..pipelines.loading import load_pipeline

        # Loaded with the base model's scheduler: each job's (the default's or the request's) is built from its
        # config, so a job's sampler never depends on the jobs before it.
        pipe = load_pipeline(replace(self.config.load, scheduler=None), embedding_dim=self.analyzer.embedding_dim)
        pipe.set_progress_bar_config(disable=True)
        self._base_scheduler = pipe.scheduler
        problem = embedding_size_problem(self.analyzer.embedding_dim, pipe.face_embedding_dim,
                                         f"the '{self.analyzer.name}' face backend gives")
        if problem:
            raise EmbeddingError(f"{problem}; pass that --face-backend")
        self.pipe = pipe

    def generate(self, request: JobRequest, folder: Path, on_step: Callable[[int, int], None] | None = None):
        """Run one job: `request`'s photos are file names in `folder`. Returns (PIL images, parameters used).
        `on_step(step, total)` may raise JobCancelled."""
        from ..params import GENERATION_PARAMS
        from ..pipelines.conditions import ExtraControl
        from ..pipelines.from_photos import generate_from_photos

        if self.pipe is None:
            raise RuntimeError("Engine.generate before Engine.load")
        unknown = set(request.controls) - set(self.control_kinds)
        if unknown:
            raise UsageError(f"this server has no {', '.join(sorted(unknown))} ControlNet; start it with "
                             + " ".join(f"--controlnet {kind}" for kind in sorted(unknown)))
        extra, scales = [], {}
        for kind in self.control_kinds:
            if kind in request.controls:
                scales[kind] = getattr(request, f"{kind}_scale")
                extra.append(ExtraControl.of_kind(kind, folder / request.controls[kind], scales[kind]))
            else:  # an extra ControlNet without a photo this time acts at scale 0, on a black image
                from PIL import Image

                scales[kind] = 0.0
                extra.append(ExtraControl(image=Image.new("RGB", (8, 8)), scale=0.0))
        faces = [folder / name for name in request.faces]
        condition = self.condition(faces, folder / request.pose if request.pose else None, request.face_index)
        values = {param.name: getattr(request, param.name) for param in GENERATION_PARAMS}
        total = values["num_inference_steps"]

        def step_end(pipe, step, timestep, callback_kwargs):
            if on_step is not None:
                on_step(step + 1, total)
            return callback_kwargs

        if on_step is not None:
            on_step(0, total)
        scheduler = request.scheduler or self.default_scheduler
        lora_scales = self.lora_scales(request.loras)
        with self._run_lock:  # one pipeline, one generation at a time
            self._set_job_options(scheduler, lora_scales)
            result = generate_from_photos(self.pipe, condition, request.prompt,
                                          negative_prompt=request.negative_prompt or None, style=request.style,
                                          controls=extra, callback_on_step_end=step_end,
                                          face_index=request.face_index, face_detail=request.face_detail,
                                          face_detail_strength=request.face_detail_strength, **values)
        from .loras import as_text

        parameters = result.metadata("serve", self.models, user_prompt=request.prompt, control_scales=scales,
                                     scheduler=scheduler, scheduler_class=result.parameters["scheduler"],
                                     loras=as_text(lora_scales), face_backend=self.analyzer.name, faces=len(faces),
                                     faces_used=len(condition.faces), pose=request.pose is not None,
                                     skipped=condition.skipped)
        return result.images, parameters

    def _set_job_options(self, scheduler: str | None, lora_scales: dict[str, float]) -> None:
        """The job's sampler and LoRA scales, set from scratch every job (the worker runs one job at a time):
        a fresh scheduler from the base model's config, and every startup LoRA's scale (0 = off)."""
        from ..pipelines.schedulers import scheduler_from

        base = self._base_scheduler
        if scheduler and self.family == "flux":
            raise UsageError("FLUX models use their own flow-matching sampler; leave scheduler out")
        self.pipe.scheduler = scheduler_from(base.config, scheduler) if scheduler else type(base).from_config(base.config)
        if self.loras:
            self.pipe.set_adapters([lora.adapter for lora in self.loras],
                                   adapter_weights=[lora_scales.get(lora.name, 0.0) for lora in self.loras])

    @staticmethod
    def save_pngs(images, parameters: dict, folder: Path) -> list[Path]:
        """PNG files with the `parameters` text chunk, as the CLI writes them: 0.png, 1.png, ... in order."""
        from ..output import write_images

        folder.mkdir(parents=True, exist_ok=True)
        return write_images(images, [folder / f"{index}.png" for index in range(len(images))], parameters)
