"""Peak GPU memory and step time of InstantID training on the full-size SDXL architecture.

Random weights built in code (instantid.testing.random_sdxl: SDXL base 1.0 shapes, the released IdentityNet
and adapter shapes), so nothing is downloaded. Each case runs a few real training steps (the training
package's own loss and model: VAE encode, both text encoders, IdentityNet + UNet with the face adapter,
backward, AdamW) in bf16 autocast with the trainable weights in fp32, as `instantid train
--mixed_precision bf16` does, and reports torch.cuda.max_memory_allocated. Cases run smallest first so
an out-of-memory case does not lose the others.

    PYTHONPATH=src python examples/training_memory.py            # on a GPU; JSON to $OUT or ./
    PYTHONPATH=src python examples/training_memory.py --small    # tiny architecture on CPU: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

GIB = 1024**3
# (batch size, gradient checkpointing), smallest first
CASES = ((1, True), (2, True), (1, False), (2, False))


def build(size: str, device: torch.device):
    from instantid.testing.random_sdxl import build_components
    from instantid.pipelines.sdxl import StableDiffusionXLInstantIDPipeline
    from instantid.training.model import SDXL, assemble_components

    parts = build_components(size, device, torch.float32 if device.type == "cpu" else torch.bfloat16)
    pipe = StableDiffusionXLInstantIDPipeline(**parts.sdxl_kwargs(), controlnet=parts.controlnet)
    weight_dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    width = 1280 if size == "full" else 64
    components = assemble_components(pipe, SDXL, 512, weight_dtype, device, resampler_width=width)
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in
              (("unet_frozen", pipe.unet), ("identitynet", pipe.controlnet), ("vae", pipe.vae),
               ("text_encoders", torch.nn.ModuleList([pipe.text_encoder, pipe.text_encoder_2])))}
    counts["trainable"] = sum(p.numel() for p in components.model.parameters() if p.requires_grad)
    counts["unet_frozen"] -= counts["trainable"] - counts["identitynet"]
    return components, counts


def fake_batch(batch_size: int, resolution: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {"caption": ["a photo of a person"] * batch_size, "index": list(range(batch_size)),
            "pixel_values": torch.rand(batch_size, 3, resolution, resolution, generator=generator) * 2 - 1,
            "kps_image": torch.rand(batch_size, 3, resolution, resolution, generator=generator),
            "face_embedding": torch.randn(batch_size, 512, generator=generator) * 20,
            "time_ids": torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]] * batch_size,
                                     dtype=torch.float32)}


def run_case(components, optimizer, batch_size: int, checkpointing: bool, resolution: int, steps: int) -> dict:
    from instantid.training.loop import batch_generator, compute_loss

    model = components.model
    for module in (model.unet, model.identitynet):
        module.enable_gradient_checkpointing() if checkpointing else module.disable_gradient_checkpointing()
    device = components.unet.device
    batch = fake_batch(batch_size, resolution)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for step in range(steps):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = compute_loss(components, model, batch, batch_generator(0, 0, step))
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    result = {"batch_size": batch_size, "gradient_checkpointing": checkpointing, "resolution": resolution,
              "loss": round(loss.item(), 4), "s_per_step": round(statistics.median(seconds[1:] or seconds), 3)}
    if device.type == "cuda":
        result["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny architecture at 64x64 on CPU")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.small else "cpu")
    size, resolution = ("small", 64) if args.small else ("full", 1024)
    start = time.perf_counter()
    components, counts = build(size, device)
    optimizer = torch.optim.AdamW([p for p in components.model.parameters() if p.requires_grad], lr=1e-5)
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "parameters_millions": {k: round(v / 1e6, 1) for k, v in counts.items()},
              "build_s": round(time.perf_counter() - start, 1), "cases": []}
    if device.type == "cuda":
        report["static_allocated_gib"] = round(torch.cuda.memory_allocated() / GIB, 2)
    print(json.dumps(report, indent=1), flush=True)
    for batch_size, checkpointing in CASES:
        try:
            case = run_case(components, optimizer, batch_size, checkpointing, resolution, args.steps)
        except torch.OutOfMemoryError as err:
            case = {"batch_size": batch_size, "gradient_checkpointing": checkpointing, "oom": str(err)[:200]}
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        report["cases"].append(case)
        print(json.dumps(case), flush=True)
    out = Path(os.environ.get("OUT", "."))
    (out / "training_memory.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
