"""One seed of the experiment: world -> base -> InstantID arms -> held-out evaluation -> results.json."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from .evaluate import HeldOutTask, copy_paste_score, generate, score_generations, to_uint8, train_judge
from .toy_models import ToyTextEncoder
from .train import ARMS, StagePlan, TrainingSet, train_base, train_instantid
from .world import COLOURS, NUM_PEOPLE, ToyRecognizer, draw_pictures, held_out_pairs

logger = logging.getLogger("benchmarks.learning")

STRENGTHS = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class Preset:
    """Sizes of one run. `full` is the reported experiment, `smoke` the CI test's."""

    poses_per_pair: int  # training pictures per (person, background) pair
    base: StagePlan
    instantid: StagePlan
    arms: tuple[str, ...]
    judge_steps: int
    eval_poses: int  # generated pictures per held-out pair
    eval_steps: int  # sampler steps
    embedding_noise: float  # the recognizer's per-picture spread when training
    noisy_embedding_noise: float  # ... for the 1-vs-3 references comparison
    sweep: bool  # adapter x IdentityNet strength sweep
    # the reference-mode comparison (`references`): per-picture expressions leaking into the embedding,
    # stage 2 trained once per `--reference` mode on the same frozen base
    expressions: bool = False
    expression_leak: float = 0.0
    reference_modes: tuple[str, ...] = ("same",)


PRESETS = {
    "full": Preset(poses_per_pair=100, base=StagePlan(steps=650, batch_size=64), instantid=StagePlan(steps=450),
                   arms=("adapter", "identitynet", "both"), judge_steps=600, eval_poses=8, eval_steps=20,
                   embedding_noise=0.3, noisy_embedding_noise=1.0, sweep=True),
    "smoke": Preset(poses_per_pair=40, base=StagePlan(steps=150, batch_size=32), instantid=StagePlan(steps=150, batch_size=32),
                    arms=("both",), judge_steps=300, eval_poses=2, eval_steps=10,
                    embedding_noise=0.3, noisy_embedding_noise=1.0, sweep=False),
    # the smoke run's sizes (the machine was shared by several jobs): one base per seed serves both modes
    "references": Preset(poses_per_pair=40, base=StagePlan(steps=150, batch_size=32),
                         instantid=StagePlan(steps=150, batch_size=32), arms=("both",), judge_steps=300, eval_poses=8, eval_steps=20, embedding_noise=0.3,
                         noisy_embedding_noise=1.0, sweep=False, expressions=True, expression_leak=0.5,
                         reference_modes=("same", "other")),
}


def trained_name(arm: str, reference: str) -> str:
    """The stage-2 run of `arm` with `--reference reference` (`same`, the paper, keeps the arm's name)."""
    return arm if reference == "same" else f"{arm}, reference {reference}"


class Variant(NamedTuple):
    """One evaluated configuration: which trained arm, at which strengths, with which references."""

    name: str
    arm: str  # the stage-2 run whose pipeline generates
    adapter_scale: float
    identitynet_scale: float
    noisy: bool = False  # references through the noisier recognizer
    references: int = 1  # reference embeddings averaged


VARIANTS = (
    Variant("base", "both", 0.0, 0.0),  # both strengths 0: exactly the frozen base
    Variant("adapter", "adapter", 1.0, 0.0),
    Variant("identitynet", "identitynet", 0.0, 1.0),
    Variant("both", "both", 1.0, 1.0),
    Variant("both, 1 noisy ref", "both", 1.0, 1.0, noisy=True, references=1),
    Variant("both, 3 noisy refs", "both", 1.0, 1.0, noisy=True, references=3),
)
REFERENCE_VARIANTS = (
    Variant("base", "both", 0.0, 0.0),
    Variant("both, reference same", "both", 1.0, 1.0),
    Variant("both, reference other", trained_name("both", "other"), 1.0, 1.0),
)


@dataclass
class SeedResult:
    seed: int
    preset: str
    seconds: float = 0.0
    judge: dict = field(default_factory=dict)  # the judge's scores on real renders
    losses: dict = field(default_factory=dict)  # stage -> [first 10% mean, last 10% mean]
    frozen_unchanged: dict = field(default_factory=dict)  # arm -> base UNet weights bit-identical after stage 2
    variants: dict = field(default_factory=dict)  # name -> {"identity", "background", "position_error"}
    sweep: dict = field(default_factory=dict)  # "adapter/identitynet" strengths -> scores


def _loss_ends(losses: list[float]) -> list[float]:
    tenth = max(1, len(losses) // 10)
    return [float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:]))]


def _base_unchanged(base: torch.nn.Module, unet: torch.nn.Module) -> bool:
    trained = unet.state_dict()
    return all(torch.equal(value, trained[key]) for key, value in base.state_dict().items())


class SeedWorld(NamedTuple):
    """One seed's world: the held-out pairs, and the training set drawn from the others."""

    held_out: set
    recognizer: ToyRecognizer
    text: ToyTextEncoder
    data: TrainingSet


def seed_world(seed: int, preset) -> SeedWorld:
    """The held-out split, training pictures, recognizer and text encoder of `seed` (also used by
    benchmarks.learning_flux: both experiments see the same world)."""
    expressions = preset.expressions
    held_out = held_out_pairs(seed)
    train_pairs = [(p, c) for p in range(NUM_PEOPLE) for c in COLOURS if (p, c) not in held_out]
    pictures = draw_pictures(train_pairs, preset.poses_per_pair, np.random.default_rng([seed, 0]), expressions)
    recognizer = ToyRecognizer(seed, noise=preset.embedding_noise, expression_leak=preset.expression_leak)
    recognizer.remember(pictures)
    text = ToyTextEncoder(seed)
    data = TrainingSet.from_pictures(pictures, text, recognizer)
    logger.info("seed %d: %d training pictures of %d pairs; held out: %s", seed, len(pictures), len(train_pairs),
                sorted(held_out))
    return SeedWorld(held_out, recognizer, text, data)


def seed_judge(seed: int, preset, result: SeedResult):
    """The judge of `seed`, its scores on real renders recorded in `result` and logged."""
    judge, judge_report = train_judge(seed, steps=preset.judge_steps, expressions=preset.expressions)
    result.judge = asdict(judge_report)
    logger.info("seed %d: judge on real renders: identity %.3f, background %.3f, centre error %.2f px", seed,
                judge_report.person_accuracy, judge_report.colour_accuracy, judge_report.centre_error)
    return judge


def run_seed(seed: int, preset_name: str, out_dir: Path) -> SeedResult:
    """Everything for one seed; writes `out_dir/results.json` and a sample grid per variant."""
    preset = PRESETS[preset_name]
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = SeedResult(seed, preset_name)
    held_out, recognizer, text, data = seed_world(seed, preset)
    judge = seed_judge(seed, preset, result)

    base, losses = train_base(data, preset.base, seed, label=f"seed {seed} base")
    result.losses["base"] = _loss_ends(losses)
    logger.info("seed %d: base loss %.4f -> %.4f", seed, *result.losses["base"])
    pipes = {}
    for arm in preset.arms:
        for reference in preset.reference_modes:
            name = trained_name(arm, reference)
            components, losses = train_instantid(base, ARMS[arm], data, preset.instantid, seed,
                                                 label=f"seed {seed} {name}", reference=reference)
            pipes[name] = components.pipe
            result.losses[name] = _loss_ends(losses)
            result.frozen_unchanged[name] = _base_unchanged(base, components.pipe.unet)
            logger.info("seed %d: %s loss %.4f -> %.4f, frozen base unchanged: %s", seed, name, *result.losses[name],
                        result.frozen_unchanged[name])

    task = HeldOutTask.draw(held_out, preset.eval_poses, seed, expressions=preset.expressions)
    recognizers = {False: recognizer, True: ToyRecognizer(seed, noise=preset.noisy_embedding_noise,
                                                          expression_leak=preset.expression_leak)}
    grids = {}
    for variant in (REFERENCE_VARIANTS if preset.expressions else VARIANTS):
        if variant.arm not in pipes:
            continue
        images = generate(pipes[variant.arm], task, text, recognizers[variant.noisy],
                          adapter_scale=variant.adapter_scale, identitynet_scale=variant.identitynet_scale,
                          references=variant.references, steps=preset.eval_steps)
        report = score_generations(judge, images, task)
        result.variants[variant.name] = {"identity": report.person_accuracy, "background": report.colour_accuracy,
                                         "position_error": report.centre_error}
        grids[variant.name] = images
        logger.info("seed %d: %-20s identity %.3f  background %.3f  position error %.2f px", seed, variant.name,
                    report.person_accuracy, report.colour_accuracy, report.centre_error)
        if preset.expressions:
            copied = copy_paste_score(judge, images, task)
            result.variants[variant.name].update(sim_ref=copied.sim_ref, sim_gt=copied.sim_gt,
                                                 copy_paste=copied.copy_paste)
            logger.info("seed %d: %-20s expression of the reference %.3f, of the held-out photo %.3f: copy-paste %+.3f",
                        seed, variant.name, copied.sim_ref, copied.sim_gt, copied.copy_paste)
    if preset.sweep and "both" in pipes:
        for adapter_scale in STRENGTHS:
            for identitynet_scale in STRENGTHS:
                images = generate(pipes["both"], task, text, recognizer, adapter_scale=adapter_scale,
                                  identitynet_scale=identitynet_scale, steps=preset.eval_steps)
                report = score_generations(judge, images, task)
                result.sweep[f"{adapter_scale}/{identitynet_scale}"] = {
                    "identity": report.person_accuracy, "background": report.colour_accuracy,
                    "position_error": report.centre_error}

    save_grids(grids, task, out_dir)
    result.seconds = time.perf_counter() - started
    (out_dir / "results.json").write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")
    logger.info("seed %d: done in %.1f min", seed, result.seconds / 60)
    return result


def grid_file_name(variant: str) -> str:
    return "samples_" + variant.replace(", ", "_").replace(" ", "_") + ".png"


def save_grids(grids: dict[str, torch.Tensor], task: HeldOutTask, out_dir: Path, zoom: int = 4) -> None:
    """Per variant: one row per held-out pair: reference, then (target, generated) per pose."""
    targets = [t.pixels for t in task.targets()]
    poses = len(targets) // len(task.pairs)
    for name, images in grids.items():
        generated = to_uint8(images)
        rows = []
        for row, (person, _) in enumerate(task.pairs):
            cells = [task.references[person][0].pixels, np.zeros_like(targets[0])]
            for column in range(poses):
                cells += [targets[row * poses + column], generated[row * poses + column]]
            rows.append(np.concatenate(cells, axis=1))
        grid = np.concatenate(rows, axis=0)
        Image.fromarray(grid).resize((grid.shape[1] * zoom, grid.shape[0] * zoom), Image.Resampling.NEAREST).save(
            out_dir / grid_file_name(name))
