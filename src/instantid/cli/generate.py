"""`instantid generate`: face photo(s) + prompt -> PNG images with their parameters in the metadata."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from ..params import GENERATION_PARAMS, PARAMS_BY_NAME

logger = logging.getLogger(__name__)

EXAMPLE = """\
example:
  instantid generate --face me.jpg --prompt "a watercolor portrait, soft light" --out out.png
  instantid generate --face a.jpg --face b.jpg --pose pose.jpg --prompt "an astronaut" --seed 7 --out outdir/
  instantid generate --tiny --face me.jpg --prompt "smoke test" --out tiny.png   # offline, random weights

Without --tiny the released InstantX/InstantID weights and SDXL base 1.0 are used (downloaded once into the
Hugging Face cache), with the antelopev2 face models (see `instantid faces --help`)."""

# --tiny runs the whole path on random tiny weights; these defaults keep it to seconds on a CPU.
TINY_DEFAULTS = {"width": 128, "height": 128, "num_inference_steps": 4}
DTYPES = {"auto": None, "float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def add_parser(subparsers) -> None:
    from ..models.hub import DEFAULT_BASE, RELEASED_REPO
    from ..pipelines.schedulers import SCHEDULERS

    p = subparsers.add_parser("generate", help="generate images of the person in a face photo",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--face", action="append", required=True, metavar="PHOTO",
                   help="reference photo (repeat for several photos of one person: embeddings are averaged)")
    p.add_argument("--prompt", required=True, help="what to generate")
    p.add_argument("--negative-prompt", default=None, help="what to avoid")
    p.add_argument("--pose", metavar="PHOTO", help="take the face keypoints (pose, placement) from this photo")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"SDXL base: Hub id, diffusers folder or single .safetensors (default {DEFAULT_BASE})")
    p.add_argument("--identitynet", default=RELEASED_REPO, help=f"IdentityNet: Hub id or ControlNetModel folder (default {RELEASED_REPO})")
    p.add_argument("--adapter", default=RELEASED_REPO, help=f"face adapter: ip-adapter.bin / .safetensors file or Hub id (default {RELEASED_REPO})")
    p.add_argument("--face-backend", choices=["auto", "antelopev2", "dlib"], default="auto",
                   help="face analysis: antelopev2 (what the released weights need), dlib (128-d, offline); "
                        "auto = antelopev2, or dlib with --tiny")
    p.add_argument("--face-models", metavar="DIR", help="folder with the antelopev2 models (or set INSTANTID_FACE_MODELS)")
    for param in GENERATION_PARAMS:
        p.add_argument(param.flag, dest=param.name, type=param.parse, default=None,
                       help=f"{param.help} (default {param.default})")
    p.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None, help="sampler (default: the base model's, Euler for SDXL base)")
    p.add_argument("--dtype", choices=list(DTYPES), default="auto", help="auto = float16 on GPU, float32 on CPU")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--offload", action="store_true", help="model CPU offload: far less GPU memory, somewhat slower")
    p.add_argument("--tiny", action="store_true",
                   help="use tiny random weights (no download; the image is noise): smoke-tests an install offline; "
                        "defaults to 128x128 and 4 steps")
    p.add_argument("--out", required=True, help="output PNG path, or a folder (ends with /) for several")
    p.set_defaults(run=run)


def _call_values(args) -> dict:
    """Generation parameter values: given on the command line, else --tiny's, else the table's defaults."""
    values = {}
    for param in GENERATION_PARAMS:
        given = getattr(args, param.name)
        if given is None and args.tiny:
            given = TINY_DEFAULTS.get(param.name)
        values[param.name] = param.default if given is None else given
    if values["control_guidance_start"] >= values["control_guidance_end"]:
        raise SystemExit(f"error: --control-start ({values['control_guidance_start']}) must be below --control-end "
                         f"({values['control_guidance_end']})")
    return values


def _output_paths(out_arg: str, count: int) -> list[Path]:
    out = Path(out_arg)
    if out_arg.endswith(("/", os.sep)) or out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        return [out / f"instantid_{i:03d}.png" for i in range(count)]
    if out.suffix.lower() != ".png":
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    return [out] if count == 1 else [out.with_name(f"{out.stem}_{i:03d}.png") for i in range(count)]


def _quiet_libraries() -> None:
    """diffusers/transformers log loading chatter as warnings; keep the terminal to our own output."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


def run(args) -> int:
    import torch
    from PIL.PngImagePlugin import PngInfo

    from .. import __version__
    from ..face import get_face_analyzer
    from ..pipelines.from_photos import face_condition
    from ..pipelines.loading import default_device, load_pipeline

    values = _call_values(args)
    if not args.verbose:
        _quiet_libraries()
    backend = args.face_backend if args.face_backend != "auto" else ("dlib" if args.tiny else "antelopev2")
    analyzer_kwargs = {"model_dir": args.face_models} if backend == "antelopev2" and args.face_models else {}
    analyzer = get_face_analyzer(backend, **analyzer_kwargs)
    # Faces first: a bad photo or missing face models fail in seconds, before any model loads.
    condition = face_condition(args.face, analyzer, args.pose)
    width, height = condition.output_size(values.pop("width"), values.pop("height"))

    base, identitynet, adapter = args.base, args.identitynet, args.adapter
    if args.tiny:
        from ..models.tiny import tiny_instantid_cached

        tiny = tiny_instantid_cached(embedding_dim=analyzer.embedding_dim)
        base, identitynet, adapter = tiny.base, tiny.identitynet, tiny.adapter
    device = default_device() if args.device == "auto" else args.device
    dtype = getattr(torch, DTYPES[args.dtype]) if DTYPES[args.dtype] else None
    pipe = load_pipeline(base, identitynet, adapter, device=device, dtype=dtype, scheduler=args.scheduler,
                         offload=args.offload)
    seed = values.pop("seed")
    images = pipe(
        prompt=args.prompt, negative_prompt=args.negative_prompt, image_embeds=condition.embedding,
        image=condition.kps_image(width, height), width=width, height=height,
        generator=torch.Generator("cpu").manual_seed(seed), **values,
    ).images

    metadata = {"prompt": args.prompt, "negative_prompt": args.negative_prompt, "seed": seed, "width": width,
                "height": height, **values, "scheduler": type(pipe.scheduler).__name__, "face_backend": backend,
                "faces": [str(f) for f in args.face], "pose": args.pose, "base": str(base),
                "identitynet": str(identitynet), "adapter": str(adapter), "tiny": args.tiny,
                "instantid_version": __version__}
    for path, image in zip(_output_paths(args.out, len(images)), images):
        info = PngInfo()
        info.add_text("parameters", json.dumps(metadata))
        image.save(path, pnginfo=info)
        print(f"wrote {path}")
    if condition.skipped:
        print("skipped: " + "; ".join(condition.skipped))
    return 0
