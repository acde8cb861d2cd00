"""Options, loading and output shared by the commands that generate (generate, swap, multi)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import UsageError
from ..params import GENERATION_PARAMS

logger = logging.getLogger(__name__)

# --tiny runs on random tiny weights; these keep it to seconds on a CPU.
TINY_DEFAULTS = {"width": 128, "height": 128, "num_inference_steps": 4}
DTYPES = {"auto": None, "float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def add_speed_options(p: argparse.ArgumentParser) -> None:
    """Device, precision and the memory/speed switches: the same for generating and benchmarking."""
    p.add_argument("--dtype", choices=list(DTYPES), default="auto",
                   help="default auto = float16 on GPU, float32 on CPU (bfloat16 is the fast half type on recent CPUs)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    p.add_argument("--offload", action="store_true", help="model CPU offload: far less GPU memory, slower (default off)")
    p.add_argument("--vae-tiling", action="store_true", help="decode the image in tiles: less memory for large images")
    p.add_argument("--vae-slicing", action="store_true", help="decode a batch one image at a time: less memory")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory layout (sometimes faster on GPU)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the UNet and ControlNets: slow first image, faster after (default off)")


def add_model_options(p: argparse.ArgumentParser) -> None:
    from ..pipelines.hub import DEFAULT_BASE, RELEASED_REPO
    from ..pipelines.schedulers import SCHEDULERS

    p.add_argument("--base", default=DEFAULT_BASE,
                   help=f"base model: Hub id, diffusers folder or single .safetensors (default {DEFAULT_BASE})")
    p.add_argument("--identitynet", default=RELEASED_REPO,
                   help=f"IdentityNet: Hub id or ControlNetModel folder (default {RELEASED_REPO})")
    p.add_argument("--adapter", default=RELEASED_REPO,
                   help=f"face adapter: ip-adapter.bin / .safetensors file or Hub id (default {RELEASED_REPO})")
    p.add_argument("--face-backend", choices=["auto", "antelopev2", "dlib"], default="auto",
                   help="face analysis: antelopev2 (what the released weights need), dlib (128-d, offline); "
                        "default auto = antelopev2, or dlib with --tiny")
    p.add_argument("--face-models", metavar="DIR",
                   help="folder with the antelopev2 models (or set INSTANTID_FACE_MODELS)")
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None,
                   help="sampler (default: the base model's, Euler for SDXL base)")
    add_speed_options(p)
    p.add_argument("--tiny", action="store_true",
                   help="tiny random weights (no download; the image is noise): checks an install offline; "
                        "defaults to 128x128 and 4 steps (default off)")


def add_generation_options(p: argparse.ArgumentParser, skip=frozenset()) -> None:
    for param in GENERATION_PARAMS:
        if param.name not in skip:
            p.add_argument(param.flag, dest=param.name, type=param.parse, default=None,
                           help=f"{param.help} (default {param.default})")


def generation_values(args, skip=frozenset()) -> dict:
    """Generation parameter values: given on the command line, else --tiny's, else the table's defaults."""
    values = {}
    for param in GENERATION_PARAMS:
        if param.name in skip:
            continue
        given = getattr(args, param.name)
        if given is None and args.tiny:
            given = TINY_DEFAULTS.get(param.name)
        values[param.name] = param.default if given is None else given
    if values["control_guidance_start"] >= values["control_guidance_end"]:
        raise UsageError(f"--control-start ({values['control_guidance_start']}) must be below --control-end "
                         f"({values['control_guidance_end']})")
    return values


def face_analyzer(args):
    from ..face import get_face_analyzer

    backend = args.face_backend if args.face_backend != "auto" else ("dlib" if args.tiny else "antelopev2")
    kwargs = {"model_dir": args.face_models} if backend == "antelopev2" and args.face_models else {}
    return get_face_analyzer(backend, **kwargs)


def load_from_args(args, analyzer, controlnets=(), loras=()) -> tuple:
    """The pipeline the options name, and the (base, identitynet, adapter, controlnets) it was built from.

    With --tiny everything is tiny and random, extra ControlNets left at their defaults included.
    """
    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from ..pipelines.conditions import CONDITION_KINDS
    from ..pipelines.loading import default_device, load_pipeline

    if not args.verbose:  # loading chatter is logged as warnings; keep the terminal to our own output
        diffusers_logging.set_verbosity_error()
        transformers_logging.set_verbosity_error()
    base, identitynet, adapter, controlnets = args.base, args.identitynet, args.adapter, list(controlnets)
    if args.tiny:
        from ..testing.tiny import tiny_instantid_cached

        tiny = tiny_instantid_cached(embedding_dim=analyzer.embedding_dim)
        base, identitynet, adapter = tiny.base, tiny.identitynet, tiny.adapter
        defaults = {kind.default_model for kind in CONDITION_KINDS.values()}
        controlnets = [tiny.identitynet if spec in defaults else spec for spec in controlnets]
    device = default_device() if args.device == "auto" else args.device
    dtype = getattr(torch, DTYPES[args.dtype]) if DTYPES[args.dtype] else None
    if args.offload and device == "cpu":
        logger.warning("--offload moves models between GPU and CPU; on the CPU it only costs time and memory")
    pipe = load_pipeline(base, identitynet, adapter, device=device, dtype=dtype, scheduler=args.scheduler,
                         offload=args.offload, controlnets=controlnets, loras=loras)
    # The same switches `instantid bench` measures (one implementation of each).
    from ..pipelines.speed import SpeedOptions, apply_to_modules

    apply_to_modules(SpeedOptions(channels_last=args.channels_last, compile=args.compile,
                                  vae_tiling=args.vae_tiling, vae_slicing=args.vae_slicing),
                     unet=pipe.unet, controlnet=pipe.controlnet, vae=pipe.vae)
    return pipe, {"base": str(base), "identitynet": str(identitynet), "adapter": str(adapter),
                  "controlnets": [str(c) for c in controlnets], "tiny": args.tiny}


def output_paths(out_arg: str, count: int, label: str = "") -> list[Path]:
    """Image paths for `count` images: OUT.png (or OUT_LABEL.png, OUT_000.png, ...), or files in a folder OUT/.
    OUT.jpg / OUT.webp keep their format (see output.py); no extension means PNG."""
    from .output import is_folder_target, output_suffix

    out = Path(out_arg)
    suffix = output_suffix(out_arg)
    if is_folder_target(out_arg):
        out.mkdir(parents=True, exist_ok=True)
        out = out / "instantid.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = f"{out.stem}_{label}" if label else out.stem
    names = [f"{stem}{suffix}"] if count == 1 else [f"{stem}_{i:03d}{suffix}" for i in range(count)]
    return [out.with_name(name) for name in names]


def write_pngs(images, out_arg: str, metadata: dict, label: str = "") -> list[Path]:
    """Save images with the generation parameters inside (PNG text chunk, or EXIF for JPEG/WebP); print each path."""
    from .. import __version__
    from .output import save_with_parameters

    paths = output_paths(out_arg, len(images), label)
    for path, image in zip(paths, images):
        save_with_parameters(image, path, {**metadata, "instantid_version": __version__})
        print(f"wrote {path}")
    return paths
