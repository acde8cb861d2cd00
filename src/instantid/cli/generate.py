"""`instantid generate`: face photo(s) + prompt -> PNG images with their parameters in the metadata."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from ..errors import UsageError
from ..params import GENERATION_PARAMS

logger = logging.getLogger(__name__)

EXAMPLE = """\
example:
  instantid generate --face me.jpg --prompt "a watercolor portrait, soft light" --out out.png
  instantid generate --face a.jpg --face b.jpg --pose pose.jpg --prompt "an astronaut" --seed 7 --out outdir/
  instantid generate --face me.jpg --prompt "a chef" --style watercolor --canny scene.jpg --out chef.png
  instantid generate --face me.jpg --prompt "a (red:1.3) scarf" --prompt-weighting --lora style.safetensors:0.7 --out s.png
  instantid generate --tiny --face me.jpg --prompt "smoke test" --out tiny.png   # offline, random weights

Without --tiny the released InstantX/InstantID weights and SDXL base 1.0 are used (downloaded once into the
Hugging Face cache), with the antelopev2 face models (see `instantid faces --help`)."""

# --tiny runs the whole path on random tiny weights; these defaults keep it to seconds on a CPU.
TINY_DEFAULTS = {"width": 128, "height": 128, "num_inference_steps": 4}
DTYPES = {"auto": None, "float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def add_parser(subparsers) -> None:
    from ..models.hub import DEFAULT_BASE, RELEASED_REPO
    from ..pipelines.conditions import CONDITION_KINDS
    from ..pipelines.schedulers import SCHEDULERS
    from ..pipelines.styles import BUILTIN_STYLES

    p = subparsers.add_parser("generate", help="generate images of the person in a face photo",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--face", action="append", required=True, metavar="PHOTO",
                   help="reference photo (repeat for several photos of one person: embeddings are averaged)")
    p.add_argument("--prompt", required=True, help="what to generate")
    p.add_argument("--negative-prompt", default=None, help="what to avoid")
    p.add_argument("--pose", metavar="PHOTO", help="take the face keypoints (pose, placement) from this photo")
    p.add_argument("--kps", type=_float_list, metavar="X,Y,...",
                   help="explicit keypoints instead of a photo's: 10 numbers (left eye, right eye, nose, left and right "
                        "mouth corner) in output pixels")
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
    p.add_argument("--style", default="none", help=f"style preset: {', '.join(BUILTIN_STYLES)}, or a name from --styles-file")
    p.add_argument("--styles-file", metavar="JSON", help='custom presets: {"name": {"prompt": "... {prompt} ...", "negative_prompt": "..."}}')
    p.add_argument("--prompt-weighting", action="store_true",
                   help="read prompts in compel syntax: (word:1.3), word++, and no 77-token limit")
    p.add_argument("--lora", action="append", default=[], metavar="SPEC[:SCALE]",
                   help="LoRA file, folder or Hub id, with an optional scale (default 1.0); repeatable. "
                        "For LCM/Lightning/Hyper-SD LoRAs also pass --scheduler lcm (or tcd), few --steps, low --guidance-scale")
    for kind in CONDITION_KINDS.values():
        p.add_argument(f"--{kind.name}", metavar="PHOTO",
                       help=f"add a {kind.name} ControlNet conditioned on this photo (it sees the text, IdentityNet the face)")
        p.add_argument(f"--{kind.name}-scale", type=float, default=kind.default_scale,
                       help=f"strength of the {kind.name} ControlNet (default {kind.default_scale})")
        p.add_argument(f"--{kind.name}-model", default=kind.default_model,
                       help=f"{kind.name} ControlNet: Hub id or folder (default {kind.default_model})")
    p.add_argument("--interpolate", metavar="PHOTO",
                   help="second identity: one image per --weights value between --face (0) and this face (1), plus a contact sheet")
    p.add_argument("--weights", type=_float_list, default=[0.0, 0.25, 0.5, 0.75, 1.0], metavar="W,W,...",
                   help="interpolation weights in [0, 1] (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--yaw", type=_float_list, metavar="DEG,DEG,...",
                   help="head-pose variants: turn the face keypoints by these yaw angles, one image each, plus a contact sheet; "
                        "write --yaw=-30,-15,0,15,30 (with =, since the list starts with a minus)")
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
        raise UsageError(f"--control-start ({values['control_guidance_start']}) must be below --control-end "
                         f"({values['control_guidance_end']})")
    return values


def _output_paths(out_arg: str, count: int, label: str = "") -> list[Path]:
    """PNG paths for `count` images: OUT.png (or OUT_LABEL.png, OUT_000.png, ...), or files in a folder OUT/."""
    out = Path(out_arg)
    if out_arg.endswith(("/", os.sep)) or out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        out = out / "instantid.png"
    elif out.suffix.lower() != ".png":
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = f"{out.stem}_{label}" if label else out.stem
    return [out.with_name(f"{stem}.png")] if count == 1 else [out.with_name(f"{stem}_{i:03d}.png") for i in range(count)]


def _quiet_libraries() -> None:
    """diffusers/transformers log loading chatter as warnings; keep the terminal to our own output."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


def _parse_lora(spec: str) -> tuple[str, float]:
    """"path:0.7" -> ("path", 0.7); a spec without a numeric suffix has scale 1.0."""
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return spec, 1.0


def _extra_controls(args, size: tuple[int, int]) -> list[tuple[str, object, float]]:
    """(model, condition image, scale) for each extra ControlNet asked for, images at the output size."""
    from ..face import load_image
    from ..pipelines.conditions import CONDITION_KINDS

    controls = []
    for kind in CONDITION_KINDS.values():
        photo = getattr(args, kind.name)
        if photo:
            image = kind.annotate(load_image(photo), size)
            controls.append((getattr(args, f"{kind.name}_model"), image, getattr(args, f"{kind.name}_scale")))
    return controls


def _with_explicit_kps(condition, numbers: list[float], size: tuple[int, int]):
    from dataclasses import replace

    import numpy as np

    kps = np.asarray(numbers, np.float32)
    if kps.size != 10:
        raise UsageError(f"--kps needs 10 numbers (5 x,y points), got {kps.size}")
    kps = kps.reshape(5, 2)
    if (kps < 0).any() or (kps[:, 0] >= size[0]).any() or (kps[:, 1] >= size[1]).any():
        raise UsageError(f"--kps points must lie inside the {size[0]}x{size[1]} output")
    return replace(condition, kps=kps, pose_size=size)


def _series(args, condition, analyzer) -> list[tuple[str, object]]:
    """(label, FaceCondition) per image to generate: one plain, or an interpolation / head-pose series."""
    from dataclasses import replace

    from ..pipelines.from_photos import face_condition
    from ..pipelines.variations import interpolate_embeddings, turn_head

    if args.interpolate and args.yaw:
        raise UsageError("use either --interpolate or --yaw, not both")
    if args.interpolate:
        other = face_condition([args.interpolate], analyzer)
        mixed = interpolate_embeddings(condition.embedding, other.embedding, args.weights)
        return [(f"w{w:.2f}", replace(condition, embedding=e)) for w, e in zip(args.weights, mixed)]
    if args.yaw:
        return [(f"yaw{d:+g}", replace(condition, kps=turn_head(condition.kps, d))) for d in args.yaw]
    return [("", condition)]


def run(args) -> int:
    import torch
    from PIL.PngImagePlugin import PngInfo

    from .. import __version__
    from ..face import get_face_analyzer
    from ..pipelines.conditions import CONDITION_KINDS
    from ..pipelines.from_photos import face_condition
    from ..pipelines.loading import default_device, load_pipeline
    from ..pipelines.variations import contact_sheet

    values = _call_values(args)
    if not args.verbose:
        _quiet_libraries()
    backend = args.face_backend if args.face_backend != "auto" else ("dlib" if args.tiny else "antelopev2")
    analyzer_kwargs = {"model_dir": args.face_models} if backend == "antelopev2" and args.face_models else {}
    analyzer = get_face_analyzer(backend, **analyzer_kwargs)
    # Faces first: a bad photo or missing face models fail in seconds, before any model loads.
    condition = face_condition(args.face, analyzer, args.pose)
    width, height = condition.output_size(values.pop("width"), values.pop("height"))
    if args.kps:
        condition = _with_explicit_kps(condition, args.kps, (width, height))
    # Everything that can fail on the inputs fails here, before any model loads.
    from ..pipelines.styles import get_style

    prompt, negative_prompt = get_style(args.style, args.styles_file).apply(args.prompt, args.negative_prompt)
    controls = _extra_controls(args, (width, height))
    loras = [_parse_lora(spec) for spec in args.lora]
    series = _series(args, condition, analyzer)

    base, identitynet, adapter = args.base, args.identitynet, args.adapter
    if args.tiny:
        from ..models.tiny import tiny_instantid_cached

        tiny = tiny_instantid_cached(embedding_dim=analyzer.embedding_dim)
        base, identitynet, adapter = tiny.base, tiny.identitynet, tiny.adapter
        # Extra ControlNets left at their (full-size) defaults become tiny random ones too.
        defaults = {kind.default_model for kind in CONDITION_KINDS.values()}
        controls = [(tiny.identitynet if model in defaults else model, image, scale) for model, image, scale in controls]
    device = default_device() if args.device == "auto" else args.device
    dtype = getattr(torch, DTYPES[args.dtype]) if DTYPES[args.dtype] else None
    pipe = load_pipeline(base, identitynet, adapter, device=device, dtype=dtype, scheduler=args.scheduler,
                         offload=args.offload, controlnets=[model for model, _, _ in controls], loras=loras)
    seed = values.pop("seed")
    call = dict(values)
    if controls:
        # IdentityNet first (it is the one that sees the face tokens), then the extra ControlNets.
        call["controlnet_conditioning_scale"] = [values["controlnet_conditioning_scale"], *[s for _, _, s in controls]]
        call["control_guidance_start"] = [values["control_guidance_start"]] + [0.0] * len(controls)
        call["control_guidance_end"] = [values["control_guidance_end"]] + [1.0] * len(controls)
    if args.prompt_weighting:
        from ..pipelines.prompts import weighted_prompt_kwargs

        call.update(weighted_prompt_kwargs(pipe, prompt, negative_prompt))
    else:
        call.update(prompt=prompt, negative_prompt=negative_prompt or None)

    metadata = {"prompt": prompt, "negative_prompt": negative_prompt, "style": args.style,
                "loras": [list(lora) for lora in loras],
                "controlnets": [[str(model), scale] for model, _, scale in controls], "seed": seed, "width": width,
                "height": height, **values, "scheduler": type(pipe.scheduler).__name__, "face_backend": backend,
                "faces": [str(f) for f in args.face], "pose": args.pose, "base": str(base),
                "identitynet": str(identitynet), "adapter": str(adapter), "tiny": args.tiny,
                "instantid_version": __version__}
    firsts = []
    for label, variant in series:
        kps_image = variant.kps_image(width, height)
        images = pipe(image_embeds=variant.embedding, width=width, height=height,
                      image=[kps_image, *[image for _, image, _ in controls]] if controls else kps_image,
                      generator=torch.Generator("cpu").manual_seed(seed), **call).images
        info = PngInfo()
        info.add_text("parameters", json.dumps({**metadata, "variant": label} if label else metadata))
        for path, image in zip(_output_paths(args.out, len(images), label), images):
            image.save(path, pnginfo=info)
            print(f"wrote {path}")
        firsts.append(images[0])
    if len(series) > 1:
        sheet_path = _output_paths(args.out, 1, "sheet")[0]
        contact_sheet(firsts, [label for label, _ in series]).save(sheet_path)
        print(f"wrote {sheet_path}")
    if condition.skipped:
        print("skipped: " + "; ".join(condition.skipped))
    return 0
