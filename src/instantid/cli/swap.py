"""`instantid swap`: put the person from face photo(s) into a target photo (face swap by inpainting, or the
whole photo repainted by img2img), writing a PNG with its parameters in the metadata."""

from __future__ import annotations

import argparse
from pathlib import Path

from .checks import check_common_args
from .common import (
    TINY_DEFAULTS,
    add_generation_options,
    add_model_options,
    face_analyzer,
    generation_values,
    load_from_args,
    write_pngs,
)


EXAMPLE = """\
example:
  instantid swap --face me.jpg --target group_photo.jpg --out swapped.png
  instantid swap --face me.jpg --target photo.jpg --region image --strength 0.5 --prompt "an oil painting" --out out.png
  instantid swap --tiny --face me.jpg --target photo.jpg --out tiny.png   # offline, random weights

--region face (default) repaints only a feathered ellipse around the target's face, at a working size, and
pastes it back: every pixel outside the mask (--mask-out writes it) is kept exactly. --region image
repaints the whole target (img2img) with the identity at the target face's keypoints."""

# Generation parameters that `swap` does not take: the size comes from the target (or --working-size).
_NOT_FOR_SWAP = {"width", "height", "num_images_per_prompt"}
STRENGTH_DEFAULTS = {"face": 0.85, "image": 0.6}
TINY_WORKING_SIZE = 128


# ---- the command


def add_parser(subparsers) -> None:
    from ..pipelines import face_swap

    p = subparsers.add_parser("swap", help="put the person in a face photo into a target photo (face swap)",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--face", action="append", required=True, metavar="PHOTO",
                   help="photo of the person to put in (repeat for several photos of one person: embeddings averaged)")
    p.add_argument("--target", required=True, metavar="PHOTO", help="the photo whose face is replaced")
    p.add_argument("--prompt", default=face_swap.DEFAULT_PROMPT,
                   help=f"what to paint (default {face_swap.DEFAULT_PROMPT!r})")
    p.add_argument("--negative-prompt", default=None, help="what to avoid (default none)")
    p.add_argument("--region", choices=["face", "image"], default="face",
                   help="face: inpaint the face only and paste back; image: repaint the whole target (img2img) "
                        "(default face)")
    p.add_argument("--strength", type=float, default=None,
                   help="how much is repainted, in (0, 1]; 1 ignores the target's pixels there "
                        f"(default {STRENGTH_DEFAULTS['face']} with --region face, {STRENGTH_DEFAULTS['image']} "
                        "with --region image)")
    p.add_argument("--target-index", type=int, default=0,
                   help="which face of the target to replace, 0 = largest (default 0)")
    p.add_argument("--working-size", type=int, default=None,
                   help=f"long side the face crop is painted at (default {face_swap.WORKING_SIDE}; {TINY_WORKING_SIZE} with --tiny)")
    p.add_argument("--mask-grow", type=float, default=face_swap.MASK_GROW,
                   help=f"mask ellipse = the face box grown by this (default {face_swap.MASK_GROW})")
    p.add_argument("--feather", type=float, default=face_swap.FEATHER,
                   help=f"soft mask edge, as a fraction of the face size (default {face_swap.FEATHER})")
    p.add_argument("--mask-out", metavar="PATH",
                   help="also write the blend mask as a greyscale PNG (default: not written)")
    add_model_options(p)
    add_generation_options(p, skip=_NOT_FOR_SWAP)
    p.add_argument("--out", required=True, help="output PNG path")
    p.set_defaults(run=run)


def run(args) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from ..face import load_image
    from ..pipelines import face_swap
    from ..pipelines.from_photos import face_condition
    from ..pipelines.img2img import check_strength_and_steps

    check_common_args(args, [("--target", args.target)] + [("--face", f) for f in args.face])  # before any model
    values = generation_values(args, skip=_NOT_FOR_SWAP)
    checked = {"strength": args.strength if args.strength is not None else STRENGTH_DEFAULTS[args.region],
               "num_inference_steps": values["num_inference_steps"]}
    check_strength_and_steps(checked, STRENGTH_DEFAULTS[args.region], values["num_inference_steps"])
    strength = checked["strength"]
    working_size = args.working_size or (TINY_WORKING_SIZE if args.tiny else face_swap.WORKING_SIDE)
    analyzer = face_analyzer(args)
    # Faces first: a target or face photo without a face fails in seconds, before any model loads.
    face_swap.target_face(load_image(args.target), analyzer, args.target, args.target_index)
    condition = face_condition(args.face, analyzer)
    pipe, models = load_from_args(args, analyzer)
    seed = values.pop("seed")
    common = dict(analyzer=analyzer, prompt=args.prompt, negative_prompt=args.negative_prompt,
                  target_index=args.target_index, strength=strength,
                  generator=torch.Generator("cpu").manual_seed(seed), **values)
    if args.region == "face":
        result = face_swap.swap_face(pipe, condition, args.target, working_side=working_size, grow=args.mask_grow,
                                     feather=args.feather, **common)
        image, skipped, mask = result.image, result.condition.skipped, result.mask
    else:
        size = (TINY_DEFAULTS["width"], TINY_DEFAULTS["height"]) if args.tiny else (None, None)
        output, _, condition = face_swap.swap_whole_image(pipe, condition, args.target, width=size[0],
                                                          height=size[1], **common)
        image, skipped, mask = output.images[0], condition.skipped, None
    metadata = {"command": "swap", "region": args.region, "prompt": args.prompt,
                "negative_prompt": args.negative_prompt, "seed": seed, "strength": strength, **values,
                "faces": [str(f) for f in args.face],
                "target": str(args.target), "target_index": args.target_index, "working_size": working_size,
                "mask_grow": args.mask_grow, "feather": args.feather, **models}
    write_pngs([image], args.out, metadata)
    if args.mask_out and mask is not None:
        mask_path = Path(args.mask_out)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(mask * 255).astype(np.uint8)).save(mask_path)
        print(f"wrote {mask_path}")
    if skipped:
        print("skipped: " + "; ".join(skipped))
    return 0

