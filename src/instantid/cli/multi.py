"""`instantid multi`: several people in one image, each from their own face photo, in their own region.
With one --face it confines that identity to its region ("enhance face region")."""

from __future__ import annotations

import argparse
import math

from ..params import PARAMS_BY_NAME, REGION_SCALE, TINY_DEFAULTS
from . import face_detail
from .checks import add_limit_options, check_common_args, check_size, limit_kwargs
from .common import add_generation_options, add_model_options, face_analyzer, load_from_args, write_pngs

EXAMPLE = """\
example:
  instantid multi --face anna.jpg --face ben.jpg --layout two_people.jpg --prompt "two friends at a cafe" --out out.png
  instantid multi --face anna.jpg --face ben.jpg --box 0,128,512,1024 --box 512,128,1024,1024 \\
      --width 1024 --height 1024 --prompt "two astronauts" --out out.png
  instantid multi --tiny --face a.jpg --face b.jpg --box 0,0,64,128 --box 64,0,128,128 --out tiny.png

Regions: --layout takes the largest faces of a photo with several people (one per --face, assigned left
to right; each region is that face's box doubled, cut where regions would overlap) and their keypoints;
--box gives one region per --face in output pixels, the face placed in its top part with the face photo's
pose. Box edges snap to the model's grid (32 px for SDXL). Regions must not overlap: outside its region an
identity has no effect on IdentityNet or the adapter."""

DEFAULT_SIZE = 1024  # with --box and no --width/--height (128 with --tiny)
_SIZE = frozenset({"width", "height"})  # declared here: their defaults differ from `generate`'s


def parse_box(text: str) -> tuple[float, float, float, float]:
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"--box must be x1,y1,x2,y2 (four finite numbers, output pixels), got {text!r}")
    return values  # type: ignore[return-value]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("multi", help="several people in one image, each in their own region",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--face", action="append", required=True, metavar="PHOTO",
                   help="photo of one person (repeat: one per identity, in the order of --box, or left to right)")
    regions = p.add_mutually_exclusive_group(required=True)
    regions.add_argument("--layout", metavar="PHOTO", help="photo with several people: their places and poses")
    regions.add_argument("--box", action="append", type=parse_box, metavar="X1,Y1,X2,Y2",
                         help="region of the matching --face, in output pixels (repeat)")
    p.add_argument("--scale", action="append", type=REGION_SCALE.parse, metavar="S",
                   help=f"{REGION_SCALE.help} (repeat per --face; default {REGION_SCALE.default})")
    p.add_argument("--prompt", required=True, help="what to generate")
    p.add_argument("--negative-prompt", default=None, help="what to avoid (default none)")
    add_model_options(p)
    add_generation_options(p, skip=_SIZE)
    for param in (PARAMS_BY_NAME["width"], PARAMS_BY_NAME["height"]):
        p.add_argument(param.flag, dest=param.name, type=param.parse, default=None,
                       help=f"output {param.name} (default: the layout photo's, long side capped at 1280, multiple "
                            f"of 64; with --box {DEFAULT_SIZE}; 128 with --tiny)")
    face_detail.add_options(p)
    add_limit_options(p)
    p.add_argument("--out", required=True, help="output PNG path (or several, numbered, with --num-images)")
    p.set_defaults(run=run)


def _requested_size(args) -> tuple[int, int] | None:
    """The output size the options give (None: the layout photo's, known after face analysis)."""
    from ..errors import RegionError

    width, height = args.width, args.height
    if args.box is not None and (width is None) != (height is None):
        raise RegionError("give both --width and --height (boxes are in output pixels)")
    default_side = TINY_DEFAULTS["width"] if args.tiny else DEFAULT_SIZE
    if args.layout:
        from ..face.image import image_size

        layout_size = image_size(args.layout)  # the header: a layout that is no image is refused here
        if width is None:
            if not args.tiny:
                return None
            from ..pipelines.sizing import default_output_size

            return default_output_size(layout_size, max_side=TINY_DEFAULTS["width"], multiple=32)  # its shape, tiny
    return width or default_side, height or default_side


def run(args) -> int:
    from ..errors import RegionError

    values, job = check_common_args(args, [("--face", f) for f in args.face] + [("--layout", args.layout)],
                                    skip=_SIZE)  # before any model
    size = _requested_size(args)
    scales = args.scale or [REGION_SCALE.default] * len(args.face)
    if len(scales) != len(args.face):
        raise RegionError(f"{len(args.face)} --face photos but {len(scales)} --scale values; give one per --face")
    if args.box is not None:
        from ..pipelines.boxes import check_boxes

        check_boxes(args.box, len(args.face), size)
    if size is not None:  # the output cap, before any model (with a layout and no size: after face analysis)
        check_size(args, *size, values["num_images_per_prompt"])
    from ..pipelines.multi_identity import generate_multi_identity, identities_from_photos

    analyzer = face_analyzer(args, released_weights=True)
    # Faces and regions first: bad photos or boxes fail in seconds, before any model loads.
    identities, output_size = identities_from_photos(args.face, analyzer, boxes=args.box, layout_photo=args.layout,
                                                     size=size, scale=scales)
    if size is None:
        check_size(args, *output_size, values["num_images_per_prompt"])
    pipe, models = load_from_args(args, analyzer)
    result = generate_multi_identity(pipe, identities, args.prompt, width=output_size[0], height=output_size[1],
                                     negative_prompt=args.negative_prompt,
                                     **{k: job[k] for k in face_detail.OPTIONS},
                                     **limit_kwargs(args), **values)
    face_detail.report(result)
    metadata = result.metadata("multi", models, face_backend=analyzer.name, faces=[str(f) for f in args.face],
                               layout=args.layout)
    write_pngs(result.images, args.out, metadata)
    return 0
