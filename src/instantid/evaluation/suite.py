"""A reproducible evaluation protocol: a suite file (reference photos x prompts x seeds x settings) from
which `instantid eval --suite SUITE.json` generates the image grid itself, then scores it (suite_report.py).

Suite file (JSON; paths relative to the file; "sample:NAME" names a photo of instantid.face.samples):

    {"name": "smoke",
     "model": {"tiny": true},                # or {"base": ..., "identitynet": ..., "adapter": ...}; default released
     "face_backend": "dlib",                 # the conditioning backend (default antelopev2; dlib with tiny)
     "people": {"hopper": ["sample:grace_hopper"], "me": ["photos/me1.jpg", "photos/me2.jpg"]},
     "prompts": ["a portrait, studio light", "an astronaut in a garden"],
     "seeds": [0, 1],
     "common": {"num_inference_steps": 30, "width": 1024, "height": 1024},
     "settings": {"released": {}, "noise 0.35": {"negative_face_noise": 0.35}}}

Setting keys: the generation parameters of params.py (by pipeline name) and `face_detail` /
`face_detail_strength`; images come from `generate_from_photos`, the entry `instantid generate` runs, so
unset parameters take params.py's defaults and a setting reproduces on the command line. Every image is also generated WITHOUT the identity (adapter and IdentityNet at
scale 0) at the same seed and setting: CLIP-I between the two says how much inserting the face disturbs
the base model. Images land in OUT/images/SETTING/PERSON/pPROMPT_sSEED.png (and OUT/images/SETTING/
_no_identity/...); existing images are kept, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..params import PARAMS_BY_NAME

SUITE_FILE_NAME = "suite.json"  # the suite as run, kept in OUT/ (resuming needs the same generation inputs)
NO_IDENTITY = "_no_identity"
DETAIL_KEYS = ("face_detail", "face_detail_strength")
_NOT_SETTINGS = ("seed", "num_images_per_prompt")  # the grid sets seeds, one image per job
NO_IDENTITY_SCALES = {"ip_adapter_scale": 0.0, "controlnet_conditioning_scale": 0.0}
DEFAULT_SIZE, TINY_SIZE, TINY_STEPS = 1024, 128, 4


@dataclass(frozen=True)
class Job:
    setting: str
    person: str | None  # None: the image without identity
    prompt_index: int
    seed: int

    def path(self, out: Path) -> Path:
        folder = out / "images" / _slug(self.setting) / (_slug(self.person) if self.person else NO_IDENTITY)
        return folder / f"p{self.prompt_index}_s{self.seed}.png"


@dataclass
class Suite:
    name: str
    people: dict[str, list[Path]]
    prompts: list[str]
    seeds: list[int]
    settings: dict[str, dict]  # each merged with `common`
    model: dict = field(default_factory=dict)
    face_backend: str = "antelopev2"
    source: dict = field(default_factory=dict, repr=False)  # the file's content, to compare on resume

    @property
    def tiny(self) -> bool:
        return bool(self.model.get("tiny"))

    def jobs(self) -> list[Job]:
        """Every image of the grid: per setting, per prompt and seed, each person and one without identity."""
        out = []
        for setting in self.settings:
            for p in range(len(self.prompts)):
                for seed in self.seeds:
                    out += [Job(setting, person, p, seed) for person in self.people]
                    out.append(Job(setting, None, p, seed))
        return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _resolve_photo(spec: str, folder: Path) -> Path:
    if spec.startswith("sample:"):
        from ..face.samples import sample_photo

        return sample_photo(spec.split(":", 1)[1])
    path = Path(spec) if Path(spec).is_absolute() else folder / spec
    if not path.is_file():
        raise UsageError(f"suite: reference photo {spec} not found (looked at {path})")
    return path


def _check_setting(name: str, values: dict) -> dict:
    from ..pipelines.face_detail import MODES
    from ..pipelines.strength import check_strength

    if not isinstance(values, dict):
        raise UsageError(f"suite: setting {name!r} must be an object of parameter values, got {values!r}")
    checked = {}
    for key, value in values.items():
        if key == "face_detail":
            if value not in MODES:
                raise UsageError(f"suite: setting {name!r}: face_detail must be one of {', '.join(MODES)}")
            checked[key] = value
        elif key == "face_detail_strength":
            checked[key] = check_strength(value)
        elif key in PARAMS_BY_NAME and key not in _NOT_SETTINGS:
            param = PARAMS_BY_NAME[key]
            try:
                checked[key] = param.parse(str(value))
            except Exception as err:  # argparse.ArgumentTypeError: one line on what is wrong
                raise UsageError(f"suite: setting {name!r}: {err}") from None
        else:
            allowed = sorted(k for k in PARAMS_BY_NAME if k not in _NOT_SETTINGS) + list(DETAIL_KEYS)
            raise UsageError(f"suite: setting {name!r} has unknown key {key!r}; use: {', '.join(allowed)}")
    return checked


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file (before any model loads); UsageError naming what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"suite file {path} cannot be read: {err.strerror or err}") from None
    except ValueError as err:
        raise UsageError(f"suite file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise UsageError(f"suite file {path} must hold a JSON object")
    unknown = set(data) - {"name", "model", "face_backend", "people", "prompts", "seeds", "common", "settings"}
    if unknown:
        raise UsageError(f"suite file {path}: unknown key(s) {', '.join(sorted(unknown))}")
    people = data.get("people")
    if not isinstance(people, dict) or not people or not all(isinstance(v, list) and v for v in people.values()):
        raise UsageError('suite: "people" must map each person to a non-empty list of reference photos')
    prompts, seeds = data.get("prompts"), data.get("seeds", [0])
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise UsageError('suite: "prompts" must be a non-empty list of prompts')
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise UsageError('suite: "seeds" must be a non-empty list of integers >= 0')
    model = data.get("model", {})
    model_keys = ("tiny", "base", "identitynet", "adapter", "device", "dtype", "family", "memory", "variant")
    if not isinstance(model, dict) or set(model) - set(model_keys):
        raise UsageError(f'suite: "model" takes {", ".join(model_keys)}')
    if model.get("family", "auto") not in ("auto", "sdxl", "flux"):
        raise UsageError('suite: "model" "family" is auto, sdxl or flux')
    tiny = bool(model.get("tiny"))
    common = {"width": TINY_SIZE if tiny else DEFAULT_SIZE, "height": TINY_SIZE if tiny else DEFAULT_SIZE,
              **({"num_inference_steps": TINY_STEPS} if tiny else {}), **data.get("common", {})}
    raw_settings = data.get("settings") or {"default": {}}
    if not isinstance(raw_settings, dict):
        raise UsageError('suite: "settings" must map a name to parameter values')
    settings = {name: _check_setting(name, {**common, **values}) for name, values in raw_settings.items()}
    if len({_slug(s) for s in settings}) < len(settings) or len({_slug(p) for p in people}) < len(people):
        raise UsageError("suite: setting and person names must stay distinct as folder names")
    backend = data.get("face_backend", "dlib" if tiny else "infiniteyou" if model.get("family") == "flux" else "antelopev2")
    folder = path.parent
    return Suite(name=str(data.get("name", path.stem)),
                 people={name: [_resolve_photo(str(p), folder) for p in photos] for name, photos in people.items()},
                 prompts=list(prompts), seeds=list(seeds), settings=settings, model=model, face_backend=backend,
                 source=data)


def check_resumable(suite: Suite, out: Path) -> None:
    """OUT may hold an earlier run of this suite (resume), not of another one (mixed images)."""
    kept = out / SUITE_FILE_NAME
    generation = {k: v for k, v in suite.source.items() if k != "name"}
    if kept.is_file():
        previous = json.loads(kept.read_text(encoding="utf-8"))
        if {k: v for k, v in previous.items() if k != "name"} != generation:
            raise UsageError(f"{out} holds images of a different suite (see {kept}); use another --out folder, "
                             "or delete it to start over")
    out.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(suite.source, indent=2) + "\n", encoding="utf-8")


def load_options(suite: Suite):
    """The LoadOptions the suite's "model" names (tiny random weights, or the family's released ones by default)."""
    from ..pipelines.loading import LoadOptions

    given = {key: value for key, value in suite.model.items() if value is not None}
    return LoadOptions(**{key: str(value) if key in ("base", "identitynet", "adapter") else value
                          for key, value in given.items()})


def load_suite_pipeline(suite: Suite, analyzer):
    """The pipeline the suite's "model" names (tiny random weights, or the released ones by default)."""
    from ..pipelines.loading import load_pipeline

    pipe = load_pipeline(load_options(suite), embedding_dim=analyzer.embedding_dim)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_suite(suite: Suite, out: str | Path, *, pipe=None, analyzer=None, progress: bool = True,
                   on_image: Callable[[Job, bool], None] | None = None) -> list[Job]:
    """Generate every missing image of the suite's grid under OUT/images (see the module docstring).
    `on_image(job, generated)` is called per job (generated=False: it was already there). Returns the jobs."""
    from PIL.PngImagePlugin import PngInfo
    from tqdm.auto import tqdm

    from ..face import get_face_analyzer
    from ..pipelines.condition import face_condition
    from ..pipelines.from_photos import generate_from_photos

    out = Path(out)
    check_resumable(suite, out)
    analyzer = analyzer or get_face_analyzer(suite.face_backend)
    conditions = {person: face_condition(photos, analyzer) for person, photos in suite.people.items()}
    jobs = suite.jobs()
    missing = [job for job in jobs if not job.path(out).is_file()]
    if missing and pipe is None:
        pipe = load_suite_pipeline(suite, analyzer)
    some_condition = next(iter(conditions.values()))
    with tqdm(total=len(jobs), initial=len(jobs) - len(missing), desc="generating", unit="image",
              disable=not progress) as bar:
        for job in jobs:
            path = job.path(out)
            if path.is_file():
                if on_image:
                    on_image(job, False)
                continue
            values = dict(suite.settings[job.setting])
            detail = {k: values.pop(k) for k in DETAIL_KEYS if k in values}
            seed = job.seed
            condition = conditions[job.person] if job.person else some_condition
            if job.person is None:
                from ..models.architectures import family_of_pipeline
                from ..params import family_skip

                values.update({k: v for k, v in NO_IDENTITY_SCALES.items() if k not in family_skip(family_of_pipeline(pipe))})
            prompt = suite.prompts[job.prompt_index]
            # The library entry `instantid generate` runs: unset parameters take params.py's defaults, as there.
            result = generate_from_photos(pipe, condition, prompt, analyzer=analyzer, seed=seed,
                                          **(detail if job.person else {}), **values)
            image, width, height = result.image, result.parameters["width"], result.parameters["height"]
            path.parent.mkdir(parents=True, exist_ok=True)
            info = PngInfo()
            info.add_text("parameters", json.dumps({"command": "eval --suite", "suite": suite.name,
                                                    "setting": job.setting, "person": job.person, "prompt": prompt,
                                                    "seed": seed, "width": width, "height": height, **values,
                                                    **detail}))
            partial = path.with_suffix(".partial.png")
            image.save(partial, pnginfo=info)
            partial.replace(path)  # an interrupted save never leaves a half image that resuming would keep
            bar.update()
            if on_image:
                on_image(job, True)
    return jobs
