"""Loading steps every model family's loader shares (pipelines/loading.py for the UNet families,
pipelines/flux_loading.py for FLUX): the default device and dtype, and LoRAs through diffusers/peft."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError

if TYPE_CHECKING:
    import torch


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def default_dtype(device: str) -> torch.dtype:
    import torch

    return torch.float16 if device in ("cuda", "mps") else torch.float32


def load_loras(pipe, loras: list[tuple[str, float]]) -> None:
    """Load LoRAs (file, folder or Hub id) through diffusers/peft and set their scales."""
    names = []
    for index, (spec, _) in enumerate(loras):
        name = f"lora_{index}"
        try:
            pipe.load_lora_weights(str(Path(spec).expanduser()) if Path(spec).expanduser().exists() else spec,
                                   adapter_name=name)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
            raise CheckpointError(
                f"'{spec}' could not be loaded as a LoRA for this base model ({err.__class__.__name__}: "
                f"{str(err)[:200]}). Pass a diffusers/kohya LoRA .safetensors made for this architecture"
            ) from err
        names.append(name)
    if names:
        pipe.set_adapters(names, adapter_weights=[scale for _, scale in loras])
