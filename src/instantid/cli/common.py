"""Options and output shared by the commands: argparse on top of the library's tables and types.

Building a parser imports nothing heavy (no torch, diffusers, transformers, OpenCV or face libraries):
`instantid --help` and option errors answer in well under a second. Each command's `run` checks its
arguments and paths first, then loads models and heavy libraries.
"""

from __future__ import annotations

import argparse
import sys

from ..params import FACE_BACKEND_CHOICES, FACE_BACKEND_RULE, GENERATION_PARAMS, JOB_PARAMS_BY_NAME, Param
from ..pipelines.loading import DTYPES, LoadOptions


def add_param_option(p: argparse.ArgumentParser, param: Param, *, default=None, help: str | None = None,
                     choices: bool = True) -> None:
    """A parameter-table row as an option: its flag, parser (range or choices) and help with the table's default.
    `default` None: the value stays None unless given, and the library's resolution fills it in."""
    listed = param.choices if choices else None
    p.add_argument(param.flag, dest=param.name, type=param.parse, default=default, choices=listed,
                   metavar=None if listed else "N" if param.type is int else "X" if param.type is float else "NAME",
                   help=(help or param.help) + (f" (default {param.default})" if param.default is not None else ""))


def add_speed_options(p: argparse.ArgumentParser) -> None:
    """Device, precision and the memory/speed switches: the same for generating and benchmarking."""
    p.add_argument("--dtype", choices=DTYPES, default="auto",
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

    p.add_argument("--base", default=DEFAULT_BASE,
                   help=f"base model: Hub id, diffusers folder or single .safetensors (default {DEFAULT_BASE})")
    p.add_argument("--identitynet", default=RELEASED_REPO,
                   help=f"IdentityNet: Hub id or ControlNetModel folder (default {RELEASED_REPO})")
    p.add_argument("--adapter", default=RELEASED_REPO,
                   help=f"face adapter: ip-adapter.bin / .safetensors file or Hub id (default {RELEASED_REPO})")
    add_family_options(p)
    add_face_backend_options(p)
    add_param_option(p, JOB_PARAMS_BY_NAME["scheduler"])
    add_speed_options(p)
    p.add_argument("--tiny", action="store_true",
                   help="tiny random weights (no download; the image is noise): checks an install offline; "
                        "defaults to 128x128 and 4 steps (default off)")


def add_family_options(p: argparse.ArgumentParser) -> None:
    """--family, and the FLUX family's --memory and --variant."""
    from ..pipelines.flux_loading import DEFAULT_VARIANT, INFINITEYOU_VARIANTS
    from ..pipelines.memory import DEFAULT_PROFILE, PROFILES

    p.add_argument("--family", choices=("auto", "sdxl", "flux"), default="auto",
                   help="model family: sdxl (InstantID; SD1.5 is read from IdentityNet), flux (InfiniteYou-FLUX: default "
                        "models black-forest-labs/FLUX.1-dev + ByteDance/InfiniteYou), or auto = read from --identitynet "
                        "(default auto; with --tiny, sdxl)")
    p.add_argument("--memory", choices=tuple(PROFILES), default=DEFAULT_PROFILE,
                   help="FLUX memory profile: " + "; ".join(f"{p.name} = {p.summary}" for p in PROFILES.values())
                        + f" (default {DEFAULT_PROFILE})")
    p.add_argument("--variant", choices=INFINITEYOU_VARIANTS, default=DEFAULT_VARIANT,
                   help="InfiniteYou variant: aes_stage2 (aesthetics, text alignment) or sim_stage1 (higher identity "
                        f"similarity) (default {DEFAULT_VARIANT})")


def family_of_args(args) -> str:
    """The family the model options name (LoadOptions.resolved_family), before anything loads."""
    return LoadOptions(identitynet=args.identitynet, tiny=getattr(args, "tiny", False),
                       family=getattr(args, "family", "auto")).resolved_family()


def add_generation_options(p: argparse.ArgumentParser, skip=frozenset()) -> None:
    for param in GENERATION_PARAMS:
        if param.name not in skip:
            add_param_option(p, param)


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
    p.add_argument("--arcface", metavar="FILE",
                   help="facexlib's ArcFace weights (recognition_arcface_ir_se50.pth) for --face-backend infiniteyou "
                        "(default: $INSTANTID_ARCFACE, $INSTANTID_FACE_MODELS, facexlib's weights folder, "
                        "~/.cache/instantid/facexlib, then the Hugging Face cache)")


def face_analyzer(args, *, released_weights: bool = False):
    """The analyzer --face-backend and --face-models name (face/backend_rule.py's rule for `auto`)."""
    from ..face.backend_rule import analyzer_for

    family = family_of_args(args) if hasattr(args, "identitynet") else None
    return analyzer_for(args.face_backend, args.face_models, released_weights=released_weights,
                        tiny=getattr(args, "tiny", False), family=family, arcface=getattr(args, "arcface", None))


def load_options(args, controlnets=(), loras=()) -> LoadOptions:
    """The LoadOptions the model options name."""
    return LoadOptions(base=args.base, identitynet=args.identitynet, adapter=args.adapter,
                       controlnets=tuple(str(c) for c in controlnets), loras=tuple(loras), tiny=args.tiny,
                       device=args.device, dtype=args.dtype, scheduler=args.scheduler, offload=args.offload,
                       channels_last=args.channels_last, compile=args.compile, vae_tiling=args.vae_tiling,
                       vae_slicing=args.vae_slicing, family=getattr(args, "family", "auto"),
                       memory=getattr(args, "memory", LoadOptions.memory),
                       variant=getattr(args, "variant", LoadOptions.variant))


def quiet_loading(verbose: bool) -> None:
    """Library chatter off unless -v; progress bars only on a terminal (one line per stage elsewhere: `stage`)."""
    from ..pipelines.loading import set_loading_output

    set_loading_output(verbose=verbose, progress_bars=sys.stderr.isatty())


def stage(text: str) -> None:
    """One progress line for a long stage, where progress bars are off (not a terminal)."""
    if not sys.stderr.isatty():
        print(f"{text} ...", file=sys.stderr, flush=True)


def load_from_args(args, analyzer, controlnets=(), loras=()) -> tuple:
    """The pipeline the options name (tiny random weights with --tiny), and its models as the user named them."""
    from ..pipelines.loading import load_pipeline

    quiet_loading(args.verbose)
    options = load_options(args, controlnets, loras)
    stage("loading models")
    pipe = load_pipeline(options, embedding_dim=analyzer.embedding_dim)
    pipe.set_progress_bar_config(disable=not sys.stderr.isatty())
    stage("generating")
    return pipe, options.model_names()


def write_pngs(images, out_arg: str, metadata: dict, label: str = "") -> list:
    """Save images with the generation parameters inside (PNG text chunk, or EXIF for JPEG/WebP); print each path."""
    from ..output import output_paths, write_images

    paths = write_images(images, output_paths(out_arg, len(images), label), metadata)
    for path in paths:
        print(f"wrote {path}")
    return paths

