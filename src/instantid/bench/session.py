"""One whole bench: build the modules, time face analysis, run the cases interleaved, report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .cases import Case, build_cases, face_inputs
from .environment import describe, load_average
from .face_stage import time_face_analysis
from .pipelines import build_components, build_pipelines
from .report import markdown, record
from .runner import Runner
from .settings import BenchSettings

logger = logging.getLogger(__name__)

DEFAULT_FACE_PHOTO = "grace_hopper"  # shipped with matplotlib


@dataclass
class BenchResult:
    markdown: str
    record: dict
    cases: list[Case]


def _face_photo(settings: BenchSettings):
    if settings.face_photo is not None:
        return settings.face_photo
    from ..face.samples import sample_photo

    return sample_photo(DEFAULT_FACE_PHOTO)


def run_bench(settings: BenchSettings, *, progress: bool = True, profile_path: str | Path | None = None) -> BenchResult:
    device = settings.torch_device
    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    env = describe(device)

    face = None
    if settings.face_backend != "none":
        face = time_face_analysis(_face_photo(settings), settings.face_backend, model_dir=settings.face_models)
        logger.info("face analysis: %s", {k: v for k, v in face.items() if k != "embedding"})

    components = build_components(settings)
    logger.info("built %s components in %s s", settings.arch, components.build_seconds)
    pipes = build_pipelines(components, settings)
    embedding_dim = pipes["instantid"].face_embedding_dim if "instantid" in pipes else 512
    real_embedding = None
    if not settings.random_weights and face and face["embedding"] is not None \
            and face["embedding"].shape[0] == embedding_dim:
        real_embedding = face["embedding"]
    cases = build_cases(settings, face_inputs(settings, embedding_dim, real_embedding))

    total = (settings.warmup + settings.runs) * len(cases)
    with tqdm(total=total, desc="bench", unit="call", disable=not progress) as bar:
        def on_run(case: Case, run: dict, warm_up: bool) -> None:
            bar.set_postfix_str(f"{case.name}: {run['seconds']:.2f} s{' (warm-up)' if warm_up else ''}")
            bar.update()
            logger.info("%s%s: %s", case.name, " (warm-up)" if warm_up else "", run)

        runner = Runner(pipes, settings)
        runner.run(cases, on_run)

    if profile_path is not None:
        _write_profiles(runner, cases, Path(profile_path))

    env["load_average_end"] = load_average()
    settings_dict = settings.to_dict()
    settings_dict["options"] = settings.options.to_dict()
    params = components.parameter_counts()
    return BenchResult(markdown(env, settings_dict, cases, face), record(env, settings_dict, cases, face, params), cases)


def _write_profiles(runner: Runner, cases: list[Case], path: Path) -> None:
    """One profiled call of each case, all tables in one text file."""
    from .profiling import profile_table

    sections = []
    for case in cases:
        table = profile_table(lambda case=case: runner.run_once(case), runner.device)
        sections.append(f"===== {case.name}\n{table}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    logger.info("wrote profiles to %s", path)
