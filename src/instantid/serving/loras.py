"""LoRAs of a server: the ones named at start (`--lora SPEC[:SCALE]`, repeatable), chosen per job by name.

Clients never name files (the security model: no user-controlled paths). Each startup LoRA gets a short
name from its spec (file stem, folder or Hub repo name); a request's `loras` field sets the scale of each by
name, "NAME:SCALE,NAME:SCALE", with the same syntax as `--lora`'s scale. The worker applies the scales with
diffusers' `set_adapters` before each job (scale 0 = off), so a job never inherits the previous job's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from ..errors import UsageError
from ..params import JOB_PARAMS_BY_NAME

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class ServerLora:
    name: str  # what requests call it
    spec: str  # the --lora file, folder or Hub id (server side only)
    scale: float  # the startup scale: a request without `loras` uses it
    adapter: str  # diffusers adapter name (loading_steps.load_loras: lora_0, lora_1, ...)


def server_loras(specs) -> list[ServerLora]:
    """The startup LoRAs ((spec, scale) pairs, as LoadOptions.loras) as named LoRAs, in order (names made unique
    with _2, _3, ...)."""
    loras, seen = [], set()
    for index, (spec, scale) in enumerate(specs):
        stem = PurePath(spec.rstrip("/")).name
        stem = stem.rsplit(".", 1)[0] if stem.lower().endswith(WEIGHT_SUFFIXES) else stem
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.") or "lora"
        unique, n = name, 2
        while unique in seen:
            unique, n = f"{name}_{n}", n + 1
        seen.add(unique)
        loras.append(ServerLora(unique, spec, scale, f"lora_{index}"))
    return loras


def requested_scales(text: str | None, loras: list[ServerLora]) -> dict[str, float]:
    """{name: scale} for every server LoRA: the startup scales when `text` is None; else the LoRAs `text`
    names ("NAME:SCALE,...", a bare NAME is 1.0) at those scales and the others off. Raises UsageError."""
    if text is None:
        return {lora.name: lora.scale for lora in loras}
    known = {lora.name for lora in loras}
    available = ", ".join(sorted(known)) or "none (start the server with --lora)"
    scales = {lora.name: 0.0 for lora in loras}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, sep, value = entry.rpartition(":") if ":" in entry else (entry, "", "1")
        name = name.strip()
        if name not in known:
            raise UsageError(f"loras: no LoRA '{name[:64]}' on this server; available: {available}")
        try:
            scale = float(value)
        except ValueError:
            raise UsageError(f"loras: the scale of '{name}' must be a number, got {value[:32]!r}") from None
        scales[name] = JOB_PARAMS_BY_NAME["lora_scale"].check(scale, f"loras: the scale of '{name}'")
    return scales


def as_text(scales: dict[str, float]) -> str:
    """{name: scale} in the request syntax, active LoRAs only ("" = none): what the job's parameters show."""
    return ",".join(f"{name}:{scale:g}" for name, scale in scales.items() if scale != 0)
