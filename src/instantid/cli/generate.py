"""`instantid generate`: face photo(s) + prompt -> PNG images with their parameters in the metadata."""

from __future__ import annotations

import argparse

from ..params import JOB_PARAMS_BY_NAME
from ..pipelines.loading import parse_lora_spec
from . import face_detail
from .checks import add_limit_options, check_generate_args, check_size, entry_options, finite_list, limit_kwargs
from .common import (add_generation_options, add_model_options, add_param_option, face_analyzer, load_from_args,
                     write_pngs)

EXAMPLE = """\
example:
  instantid generate --face me.jpg --prompt "a watercolor portrait, soft light" --out out.png
  instantid generate --face a.jpg --face b.jpg --pose pose.jpg --prompt "an astronaut" --seed 7 --out outdir/
  instantid generate --face me.jpg --prompt "a chef" --style watercolor --canny scene.jpg --out chef.png
  instantid generate --face me.jpg --prompt "a (red:1.3) scarf" --prompt-weighting --lora style.safetensors:0.7 --out s.png
  instantid generate --face a.jpg --interpolate b.jpg --weights 0,0.5,1 --prompt "a portrait" --out mix.png
  instantid generate --tiny --face me.jpg --prompt "smoke test" --out tiny.png   # offline, random weights
  instantid generate --family flux --face me.jpg --prompt "a portrait, cinematic" --memory 8bit --out flux.png
  instantid generate --tiny --family flux --face me.jpg --prompt "smoke test" --out tiny-flux.png

Without --tiny the released InstantX/InstantID weights and SDXL base 1.0 are used (downloaded once into the
Hugging Face cache), with the antelopev2 face models (see `instantid faces --help`). With --family flux,
InfiniteYou-FLUX v1.0 on FLUX.1-dev (non-commercial weights), with antelopev2 detection and facexlib's ArcFace."""


def add_parser(subparsers) -> None:
    from ..params import INTERPOLATION_WEIGHTS
    from ..pipelines.conditions import CONDITION_KINDS
    p = subparsers.add_parser("generate", help="generate images of the person in a face photo",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--face", action="append", required=True, metavar="PHOTO",
                   help="reference photo (repeat for several photos of one person: embeddings are averaged)")
    p.add_argument("--prompt", required=True, help="what to generate")
    p.add_argument("--negative-prompt", default=None, help="what to avoid (default none)")
    add_param_option(p, JOB_PARAMS_BY_NAME["face_index"], default=JOB_PARAMS_BY_NAME["face_index"].default)
    p.add_argument("--pose", metavar="PHOTO", help="take the face keypoints (pose, placement) from this photo")
    p.add_argument("--kps", type=finite_list, metavar="X,Y,...",
                   help="explicit keypoints instead of a photo's: 10 numbers (left eye, right eye, nose, left and right "
                        "mouth corner) in output pixels")
    add_model_options(p)
    add_generation_options(p)
    add_limit_options(p)
    style = JOB_PARAMS_BY_NAME["style"]  # a custom name from --styles-file too: checked with the file
    p.add_argument(style.flag, default=style.default, help=f"{style.help}, or a name from --styles-file (default none)")
    p.add_argument("--styles-file", metavar="JSON",
                   help='custom presets: {"name": {"prompt": "... {prompt} ...", "negative_prompt": "..."}}')
    p.add_argument("--prompt-weighting", action="store_true",
                   help="read prompts in compel syntax: (word:1.3), word++, and no 77-token limit (default off)")
    p.add_argument("--lora", action="append", default=[], metavar="SPEC[:SCALE]",
                   help="LoRA file, folder or Hub id, with an optional scale (default 1.0); repeatable. For LCM/"
                        "Lightning/Hyper-SD LoRAs also pass --scheduler lcm (or tcd), few --steps, low --guidance-scale")
    for kind in CONDITION_KINDS.values():
        p.add_argument(f"--{kind.name}", metavar="PHOTO",
                       help=f"add a {kind.name} ControlNet conditioned on this photo (it sees the text, IdentityNet the face)")
        add_param_option(p, kind.scale_param, default=kind.default_scale)
        p.add_argument(f"--{kind.name}-model", default=kind.default_model,
                       help=f"{kind.name} ControlNet: Hub id or folder (default {kind.default_model})")
    p.add_argument("--interpolate", metavar="PHOTO",
                   help="second identity: one image per --weights value between --face (0) and this face (1), "
                        "plus a contact sheet")
    p.add_argument("--weights", type=finite_list, default=list(INTERPOLATION_WEIGHTS), metavar="W,W,...",
                   help=f"interpolation weights in [0, 1] (default {','.join(f'{w:g}' for w in INTERPOLATION_WEIGHTS)})")
    p.add_argument("--yaw", type=finite_list, metavar="DEG,DEG,...",
                   help="head-pose variants: turn the face keypoints by these yaw angles, one image each, plus a "
                        "contact sheet; write --yaw=-30,-15,0,15,30 (with =, since the list starts with a minus)")
    face_detail.add_options(p)
    p.add_argument("--out", required=True,
                   help="output path (.png, or .jpg/.webp with the parameters in EXIF), or a folder (ends with /)")
    p.set_defaults(run=run)


def _extra_controls(args) -> list:
    """An ExtraControl per extra ControlNet asked for (--canny/--depth/--openpose PHOTO)."""
    from ..pipelines.conditions import CONDITION_KINDS, ExtraControl

    return [ExtraControl.of_kind(kind.name, getattr(args, kind.name), getattr(args, f"{kind.name}_scale"),
                                 getattr(args, f"{kind.name}_model"))
            for kind in CONDITION_KINDS.values() if getattr(args, kind.name)]


def run(args) -> int:
    values, job = check_generate_args(args, [parse_lora_spec(spec) for spec in args.lora])  # before any model
    from ..pipelines.condition import face_condition
    from ..pipelines.from_photos import generate_from_photos
    from ..pipelines.variations import contact_sheet

    analyzer = face_analyzer(args, released_weights=True)
    # Face analysis before any model loads: a photo without a face fails in seconds. The size is the
    # library's decision (FaceCondition.output_size); it is asked here only to check --kps early.
    condition = face_condition(args.face, analyzer, args.pose, face_index=args.face_index)
    width, height = condition.output_size(values["width"], values["height"])
    check_size(args, width, height, values["num_images_per_prompt"])
    if args.kps:
        condition.with_kps(args.kps, (width, height))
    other = face_condition([args.interpolate], analyzer) if args.interpolate else None
    controls = _extra_controls(args)
    loras = [parse_lora_spec(spec) for spec in args.lora]

    pipe, models = load_from_args(args, analyzer, controlnets=[c.model for c in controls], loras=loras)
    result = generate_from_photos(pipe, condition, args.prompt, analyzer=analyzer,
                                  negative_prompt=args.negative_prompt, styles_file=args.styles_file,
                                  prompt_weighting=args.prompt_weighting, kps=args.kps, controls=controls,
                                  interpolate=other, weights=args.weights, yaw=args.yaw, **entry_options(job),
                                  **limit_kwargs(args), **values)
    face_detail.report(result)
    metadata = result.metadata("generate", models, loras=[list(lora) for lora in loras],
                               faces=[str(f) for f in args.face], pose=args.pose)
    series = result.series()
    for label, images in series:
        write_pngs(images, args.out, {**metadata, "variant": label} if label else metadata, label)
    if len(series) > 1:
        write_pngs([contact_sheet([images[0] for _, images in series], [label for label, _ in series])],
                   args.out, metadata, "sheet")
    if result.skipped:
        print("skipped: " + "; ".join(result.skipped))
    return 0
