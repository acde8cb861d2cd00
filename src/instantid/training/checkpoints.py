"""Checkpoints: the trained weights in the released layout, plus accelerate's resumable state.

A checkpoint folder `OUT/checkpoint-<step>/` holds
    ControlNetModel/           IdentityNet (save_pretrained), loadable with --identitynet
    ip-adapter.bin             the face adapter in the released layout, loadable with --adapter
    optimizer.bin, scheduler.bin, random_states_*.pkl, custom_checkpoint_0.pkl   (accelerate's state)
so any checkpoint can be used for generation as is. accelerate's own model file is not written: the
save hook exports only the trained modules (the frozen base would be gigabytes of copies).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from ..models.adapter import (
    adapter_state_dict_from_unet,
    copy_adapter_into_unet_,
    load_adapter_state_dict,
    save_adapter_state_dict,
)
from .flux import FluxInstantIDTrainingModel, export_flux_weights, import_flux_weights_
from .model import InstantIDTrainingModel

TRAINING_MODELS = (InstantIDTrainingModel, FluxInstantIDTrainingModel)

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
IDENTITYNET_DIR = "ControlNetModel"
ADAPTER_FILES = {"bin": "ip-adapter.bin", "safetensors": "ip-adapter.safetensors"}


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f"{CHECKPOINT_PREFIX}{step}"


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint in `output_dir`, oldest first."""
    found = []
    for folder in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", folder.name)
        if match and folder.is_dir():
            found.append((int(match.group(1)), folder))
    return sorted(found)


def partial_checkpoint_dir(folder: Path) -> Path:
    """Where a checkpoint is written before it is complete: not a `checkpoint-<step>` name, so a crash while
    saving leaves nothing `--resume_from_checkpoint latest` would pick."""
    return folder.with_name(f".{folder.name}.partial")


def rotate_checkpoints(output_dir: str | Path, keep: int | None) -> list[Path]:
    """Delete the oldest checkpoints so that at most `keep` remain (called once the newest is complete)."""
    if not keep:
        return []
    existing = list_checkpoints(output_dir)
    doomed = [folder for _, folder in existing[: max(0, len(existing) - keep)]]
    for folder in doomed:
        logger.info("removing old checkpoint %s (--checkpoints_total_limit %d)", folder, keep)
        shutil.rmtree(folder)
    return doomed


def resolve_resume(output_dir: str | Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from: a given folder, the newest in `output_dir` for "latest", or None."""
    if not resume:
        return None
    if resume != "latest":
        return Path(resume)
    existing = list_checkpoints(output_dir)
    if not existing:
        logger.info("no checkpoint in %s to resume from: starting a new run", output_dir)
        return None
    return existing[-1][1]


def export_weights(model, folder: str | Path, adapter_format: str = "bin") -> dict[str, Path]:
    """Write IdentityNet and the face adapter, in the released layout, into `folder` (FLUX: InfiniteYou's)."""
    if isinstance(model, FluxInstantIDTrainingModel):
        return export_flux_weights(model, folder, adapter_format)
    folder = Path(folder)
    identitynet_dir = folder / IDENTITYNET_DIR
    model.identitynet.save_pretrained(identitynet_dir, safe_serialization=True)
    adapter = save_adapter_state_dict(adapter_state_dict_from_unet(model.unet), folder / ADAPTER_FILES[adapter_format])
    return {"identitynet": identitynet_dir, "adapter": adapter}


def import_weights_(model: InstantIDTrainingModel, folder: str | Path) -> None:
    """Overwrite the trained modules, in place (the optimizer keeps its parameters), from `folder`."""
    from diffusers import ControlNetModel

    if isinstance(model, FluxInstantIDTrainingModel):
        return import_flux_weights_(model, folder)

    folder = Path(folder)
    saved = ControlNetModel.from_pretrained(folder / IDENTITYNET_DIR)
    model.identitynet.load_state_dict(saved.state_dict(), strict=True)
    adapter_file = next((folder / name for name in ADAPTER_FILES.values() if (folder / name).is_file()), None)
    if adapter_file is None:
        from ..errors import CheckpointError

        raise CheckpointError(f"checkpoint {folder} has no {' or '.join(ADAPTER_FILES.values())}; it is incomplete: "
                              "resume from an earlier checkpoint")
    copy_adapter_into_unet_(model.unet, load_adapter_state_dict(adapter_file))


def register_checkpoint_hooks(accelerator, adapter_format: str) -> None:
    """accelerate's save_state / load_state go through export_weights / import_weights_ for our model."""

    def save_hook(models, weights, output_dir):
        for model in models:
            model = accelerator.unwrap_model(model)
            if isinstance(model, TRAINING_MODELS) and accelerator.is_main_process:
                export_weights(model, output_dir, adapter_format)
        weights.clear()  # the export above is the model checkpoint

    def load_hook(models, input_dir):
        while models:
            model = accelerator.unwrap_model(models.pop())
            if isinstance(model, TRAINING_MODELS):
                import_weights_(model, input_dir)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


class TrainingProgress:
    """Where training stands, saved in every checkpoint (accelerate's register_for_checkpointing)."""

    def __init__(self):
        self.global_step = 0  # optimizer steps done
        self.stream = None  # streaming from shards: this rank's StreamPosition
        self.stream_workers = 1
        self.stream_positions: list = []  # every rank's position (gathered before a checkpoint is saved)

    def observe(self, batch: dict) -> None:
        """A micro-batch was taken from the stream."""
        if self.stream is not None and "stream" in batch:
            self.stream.advance(batch, self.stream_workers)

    def state_dict(self) -> dict:
        return {"global_step": self.global_step, "stream_positions": self.stream_positions}

    def load_state_dict(self, state: dict) -> None:
        self.global_step = int(state["global_step"])
        self.stream_positions = list(state.get("stream_positions", []))
