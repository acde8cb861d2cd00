"""The face-detail options of the generating commands (generate, multi): --face-detail, --face-detail-strength.
See pipelines/face_detail.py for what the pass does."""

from __future__ import annotations

import argparse

from ..params import FACE_DETAIL_MODES as MODES
from ..params import FACE_DETAIL_STRENGTH as DEFAULT_STRENGTH
from ..params import FACE_DETAIL_THRESHOLD as DEFAULT_THRESHOLD


def _strength(text: str) -> float:
    from ..pipelines.strength import check_strength

    try:
        return check_strength(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--face-detail", choices=MODES, default="off",
                   help=f"repaint each face at the working size after generation: auto = when its long side is "
                        f"below {DEFAULT_THRESHOLD} px (full-body and wide shots), on = always (default off)")
    p.add_argument("--face-detail-strength", type=_strength, default=DEFAULT_STRENGTH, metavar="S",
                   help=f"how much of the face the detail pass repaints, in (0, 1] (default {DEFAULT_STRENGTH})")


def check(args, values: dict) -> None:
    """Before any model loads: the entries' own check (the pass must have at least one denoising step)."""
    from ..pipelines.face_detail import checked_options

    checked_options(args.face_detail, args.face_detail_strength, values["num_inference_steps"])


def entry_options(args) -> dict:
    """The library entries' keywords for these options."""
    return {"face_detail": args.face_detail, "face_detail_strength": args.face_detail_strength}


def report(result) -> None:
    """Say what each face-detail pass did."""
    for line in result.parameters.get("face_detail_passes", []):
        print(f"face detail: {line}")
