"""`instantid swap`: put the person from face photo(s) into a target photo (face swap by inpainting, or the
whole photo repainted by img2img), writing a PNG with its parameters in the metadata."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..params import (
    SWAP_PARAMS,
    SWAP_PROMPT,
    SWAP_STRENGTH,
    SWAP_WORKING_SIDE,
    TINY_DEFAULTS,
)
from .checks import add_limit_options, check_common_args, check_size, limit_kwargs
from .common import (add_generation_options, add_model_options, add_param_option, face_analyzer, load_from_args,
                     write_pngs)


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
STRENGTH_DEFAULTS = SWAP_STRENGTH
TINY_WORKING_SIZE = 128
MASK_OUT_SUFFIXES = (".png",)


# ---- the command


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("swap", help="put the person in a face photo into a target photo (face swap)",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--face", action="append", required=True, metavar="PHOTO",
                   help="photo of the person to put in (repeat for several photos of one person: embeddings averaged)")
    p.add_argument("--target", required=True, metavar="PHOTO", help="the photo whose face is replaced")
    p.add_argument("--prompt", default=SWAP_PROMPT,
                   help=f"what to paint (default {SWAP_PROMPT!r})")
    p.add_argument("--negative-prompt", default=None, help="what to avoid (default none)")
    p.add_argument("--region", choices=["face", "image"], default="face",
                   help="face: inpaint the face only and paste back; image: repaint the whole target (img2img) "
                        "(default face)")
    p.add_argument("--strength", type=float, default=None,
                   help="how much is repainted, in (0, 1]; 1 ignores the target's pixels there "
                        f"(default {STRENGTH_DEFAULTS['face']} with --region face, {STRENGTH_DEFAULTS['image']} "
                        "with --region image)")
    for param in SWAP_PARAMS:  # --target-index, --working-size, --mask-grow, --feather
        tiny = param.name == "working_side"  # its default with --tiny is smaller
        add_param_option(p, param, default=None if tiny else param.default,
                         help=f"{param.help} ({TINY_WORKING_SIZE} with --tiny)" if tiny else None)
    p.add_argument("--mask-out", metavar="PATH",
                   help="also write the blend mask as a greyscale PNG (default: not written)")
    add_model_options(p)
    add_generation_options(p, skip=_NOT_FOR_SWAP)
    add_limit_options(p)
    p.add_argument("--out", required=True, help="output PNG path")
    p.set_defaults(run=run)


def check_args(args) -> tuple[dict, float, int]:
    """Everything `swap` can refuse without a model: files, --out/--mask-out, the numbers, the output cap
    (the working size with --region face, the output size with --region image) and a target too big to
    work on at full size. Returns (generation values, strength, working size)."""
    from ..checks import check_output_file
    from ..pipelines.strength import check_strength_and_steps

    values, _ = check_common_args(args, [("--target", args.target)] + [("--face", f) for f in args.face],
                                  skip=_NOT_FOR_SWAP)
    if args.mask_out:
        check_output_file(args.mask_out, "--mask-out file", suffixes=MASK_OUT_SUFFIXES)
    checked = {"strength": args.strength if args.strength is not None else STRENGTH_DEFAULTS[args.region],
               "num_inference_steps": values["num_inference_steps"]}
    check_strength_and_steps(checked, STRENGTH_DEFAULTS[args.region], values["num_inference_steps"])
    working_size = args.working_side or (TINY_WORKING_SIZE if args.tiny else SWAP_WORKING_SIDE)
    if args.region == "face":
        check_size(args, working_size, working_size, 1, "--working-size")
    else:
        check_size(args, *_whole_image_size(args), 1, "target photo (it sets the output size)")
    from ..face.image import check_full_size, image_size

    image_size(args.target)  # the header: a target that is no image is refused here, not after models load
    if args.region == "face":
        check_full_size(args.target)  # pasted back pixel for pixel, so worked on at full size
    return values, checked["strength"], working_size


def _whole_image_size(args) -> tuple[int, int]:
    """--region image's output size: --tiny's, else the target's, capped (face_swap.swap_whole_image's rule)."""
    if args.tiny:
        return TINY_DEFAULTS["width"], TINY_DEFAULTS["height"]
    from ..face.image import image_size
    from ..pipelines.sizing import default_output_size

    return default_output_size(image_size(args.target))


def run(args) -> int:
    values, strength, working_size = check_args(args)  # before any model
    from ..checks import write_atomically
    from ..pipelines import face_swap
    from ..pipelines.condition import face_condition

    analyzer = face_analyzer(args, released_weights=True)
    # Faces first: a target or face photo without a face fails in seconds, before any model loads (the
    # target is read at detection size here, not whole).
    face_swap.target_face(args.target, analyzer, args.target, args.target_index)
    condition = face_condition(args.face, analyzer)
    pipe, models = load_from_args(args, analyzer)
    common = dict(analyzer=analyzer, prompt=args.prompt, negative_prompt=args.negative_prompt,
                  target_index=args.target_index, strength=strength, **limit_kwargs(args), **values)
    if args.region == "face":
        result = face_swap.swap_face(pipe, condition, args.target, working_side=working_size, grow=args.grow,
                                     feather=args.feather, **common)
    else:
        size = (TINY_DEFAULTS["width"], TINY_DEFAULTS["height"]) if args.tiny else (None, None)
        result = face_swap.swap_whole_image(pipe, condition, args.target, width=size[0], height=size[1], **common)
    metadata = result.metadata("swap", models, working_size=working_size, mask_grow=args.grow,
                               feather=args.feather, faces=[str(f) for f in args.face], target=str(args.target))
    write_pngs(result.images[:1], args.out, metadata)
    if args.mask_out and result.mask is not None:
        import numpy as np
        from PIL import Image

        mask = Image.fromarray(np.rint(result.mask * 255).astype(np.uint8))
        mask_path = Path(args.mask_out).expanduser()
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(mask_path,
                                     lambda temporary: mask.save(temporary, format="PNG"), "--mask-out file")
        print(f"wrote {mask_path}")
    if result.skipped:
        print("skipped: " + "; ".join(result.skipped))
    return 0
