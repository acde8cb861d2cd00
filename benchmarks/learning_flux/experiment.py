"""One seed: world -> toy FLUX base -> InstantID arms -> held-out evaluation -> results.json.

The world, the held-out split, the recognizer, the judge, the task and the sample grids are
benchmarks.learning's; what differs is the base (a DiT with rectified flow) and the arms.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from benchmarks.learning.evaluate import HeldOutTask, score_generations
from benchmarks.learning.experiment import SeedResult, _base_unchanged, _loss_ends, save_grids, seed_judge, seed_world
from benchmarks.learning.train import StagePlan

from .evaluate import generate
from .train import ARMS, train_base, train_instantid

logger = logging.getLogger("benchmarks.learning")


@dataclass(frozen=True)
class Preset:
    poses_per_pair: int
    base: StagePlan
    instantid: StagePlan
    arms: tuple[str, ...]
    judge_steps: int
    eval_poses: int
    eval_steps: int
    embedding_noise: float
    expressions: bool = False  # benchmarks.learning's world options, as its presets have them
    expression_leak: float = 0.0


BOTH = "identitynet + adapter branch"
PRESETS = {
    # Sized for a 2-core machine shared with other jobs (about half an hour for two seeds at once).
    "full": Preset(poses_per_pair=100, base=StagePlan(steps=300, batch_size=64),
                   instantid=StagePlan(steps=200, batch_size=32), arms=tuple(ARMS), judge_steps=600, eval_poses=6,
                   eval_steps=12, embedding_noise=0.3),
    "smoke": Preset(poses_per_pair=40, base=StagePlan(steps=120, batch_size=32),
                    instantid=StagePlan(steps=100, batch_size=32), arms=tuple(ARMS), judge_steps=300, eval_poses=2,
                    eval_steps=8, embedding_noise=0.3),
}


class Variant(NamedTuple):
    name: str
    arm: str
    adapter_scale: float
    identitynet_scale: float


VARIANTS = (
    Variant("base", BOTH, 0.0, 0.0),  # both strengths 0: exactly the frozen base
    Variant("identitynet", "identitynet", 0.0, 1.0),
    Variant(BOTH, BOTH, 1.0, 1.0),
    Variant("adapter branch alone", BOTH, 1.0, 0.0),  # the same model, IdentityNet off at generation
)


def run_seed(seed: int, preset_name: str, out_dir: Path) -> SeedResult:
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
        components, losses = train_instantid(base, ARMS[arm], data, preset.instantid, seed, label=f"seed {seed} {arm}")
        pipes[arm] = components.pipe
        result.losses[arm] = _loss_ends(losses)
        result.frozen_unchanged[arm] = _base_unchanged(base, components.pipe.transformer)
        logger.info("seed %d: %s loss %.4f -> %.4f, frozen base unchanged: %s", seed, arm, *result.losses[arm],
                    result.frozen_unchanged[arm])

    task = HeldOutTask.draw(held_out, preset.eval_poses, seed)
    grids = {}
    for variant in VARIANTS:
        if variant.arm not in pipes:
            continue
        images = generate(pipes[variant.arm], task, text, recognizer, adapter_scale=variant.adapter_scale,
                          identitynet_scale=variant.identitynet_scale, steps=preset.eval_steps)
        report = score_generations(judge, images, task)
        result.variants[variant.name] = {"identity": report.person_accuracy, "background": report.colour_accuracy,
                                         "position_error": report.centre_error}
        grids[variant.name] = images
        logger.info("seed %d: %-36s identity %.3f  background %.3f  position error %.2f px", seed, variant.name,
                    report.person_accuracy, report.colour_accuracy, report.centre_error)
    save_grids(grids, task, out_dir)
    result.seconds = time.perf_counter() - started
    (out_dir / "results.json").write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")
    logger.info("seed %d: done in %.1f min", seed, result.seconds / 60)
    return result
