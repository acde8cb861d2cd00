"""Options, checks, loading and output shared by the commands.

Building a parser imports nothing heavy (no torch, diffusers, transformers, OpenCV or face libraries):
`instantid --help` and option errors answer in well under a second. Each command's `run` checks its
arguments and paths first, then loads models and heavy libraries.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..params import GENERATION_PARAMS, resolve

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
    add_face_backend_options(p)
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None,
                   help="sampler (default: the base model's, Euler for SDXL base)")
    add_speed_options(p)
    p.add_argument("--tiny", action="store_true",
                   help="tiny random weights (no download; the image is noise): checks an install offline; "
                        "defaults to 128x128 and 4 steps (default off)")


def parse_lora_spec(spec: str) -> tuple[str, float]:
    """"path:0.7" -> ("path", 0.7); a spec without a numeric suffix has scale 1.0
    (the `--lora SPEC[:SCALE]` syntax of generate, serve and ui)."""
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return spec, 1.0


def add_generation_options(p: argparse.ArgumentParser, skip=frozenset()) -> None:
    for param in GENERATION_PARAMS:
        if param.name not in skip:
            p.add_argument(param.flag, dest=param.name, type=param.parse, default=None,
                           metavar="N" if param.type is int else "X", help=f"{param.help} (default {param.default})")


def generation_values(args, skip=frozenset()) -> dict:
    """Generation parameter values: given on the command line, else --tiny's, else the table's defaults
    (params.resolve, the library's own defaults and checks)."""
    given = {}
    for param in GENERATION_PARAMS:
        if param.name in skip:
            continue
        value = getattr(args, param.name)
        given[param.name] = TINY_DEFAULTS.get(param.name) if value is None and args.tiny else value
    return resolve(given, skip=skip)


# ---- face analysis: one option set and one default rule for every command

FACE_BACKEND_CHOICES = ("auto", "antelopev2", "dlib")
FACE_BACKEND_RULE = ("auto = antelopev2 where the released weights are used (generate, swap, multi, serve, ui), dlib "
                     "elsewhere and with --tiny (offline, free); for eval, every recognizer available")


def add_face_backend_options(p: argparse.ArgumentParser, *, legacy_backend_flag: bool = False) -> None:
    """--face-backend and --face-models, the same for faces, generate, swap, multi, serve, ui, prepare-data, eval
    and bench."""
    p.add_argument("--face-backend", choices=FACE_BACKEND_CHOICES, default="auto",
                   help="face analysis: antelopev2 (512-d, what the released weights need; non-commercial models) "
                        f"or dlib (128-d, offline, commercial use allowed). Default {FACE_BACKEND_RULE}")
    if legacy_backend_flag:  # the old name of --face-backend in `faces` and `prepare-data`
        p.add_argument("--backend", dest="face_backend", choices=FACE_BACKEND_CHOICES, help=argparse.SUPPRESS)
    p.add_argument("--face-models", metavar="DIR",
                   help="antelopev2 model folder: DIR/models/antelopev2/*.onnx or DIR/*.onnx (default: "
                        "$INSTANTID_FACE_MODELS, then the Hugging Face cache); with --face-backend dlib, a folder of its "
                        ".dat files (default: the face_recognition_models package)")


def face_backend_name(args, *, released_weights: bool = False) -> str:
    """The backend --face-backend names, `auto` resolved by FACE_BACKEND_RULE."""
    if args.face_backend != "auto":
        return args.face_backend
    return "antelopev2" if released_weights and not getattr(args, "tiny", False) else "dlib"


def face_analyzer(args, *, released_weights: bool = False):
    from ..face import get_face_analyzer

    backend = face_backend_name(args, released_weights=released_weights)
    # --face-models names antelopev2's pack unless dlib was asked for by name (`auto` may resolve to dlib,
    # e.g. with --tiny, while the folder holds antelopev2 models)
    given = args.face_models and (backend == "antelopev2" or args.face_backend == "dlib")
    return get_face_analyzer(backend, **({"model_dir": args.face_models} if given else {}))


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
