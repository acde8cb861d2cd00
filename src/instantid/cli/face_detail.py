"""The face-detail options of the generating commands (generate, multi): --face-detail, --face-detail-strength.
See pipelines/face_detail.py for what the pass does."""

from __future__ import annotations

import argparse

from ..pipelines.face_detail import DEFAULT_STRENGTH, DEFAULT_THRESHOLD, MODES

# Generation values the detail pass shares with the image it repaints (same identity strength and CFG).
_SHARED = ("num_inference_steps", "guidance_scale", "ip_adapter_scale", "controlnet_conditioning_scale",
           "negative_face_noise")


def _strength(text: str) -> float:
    from ..pipelines.img2img import check_strength

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
    """Before any model loads: the pass must have at least one denoising step."""
    if args.face_detail != "off":
        from ..pipelines.img2img import check_strength_and_steps

        check_strength_and_steps({"strength": args.face_detail_strength}, DEFAULT_STRENGTH,
                                 values["num_inference_steps"])


def metadata(args) -> dict:
    return {"face_detail": args.face_detail, "face_detail_strength": args.face_detail_strength}


def apply(args, pipe, images, faces, *, prompt: str, negative_prompt: str | None, seed: int, values: dict) -> list:
    """Each image with each (embedding, kps in output pixels) face detailed as the options say."""
    if args.face_detail == "off":
        return list(images)
    import torch

    from ..pipelines.face_detail import face_detail_all

    shared = {k: values[k] for k in _SHARED if k in values}
    if isinstance(shared.get("controlnet_conditioning_scale"), (list, tuple)):  # IdentityNet's, of several
        shared["controlnet_conditioning_scale"] = shared["controlnet_conditioning_scale"][0]
    out = []
    for image in images:
        image, results = face_detail_all(pipe, image, faces, prompt=prompt, negative_prompt=negative_prompt or None,
                                         mode=args.face_detail, strength=args.face_detail_strength,
                                         make_generator=lambda: torch.Generator("cpu").manual_seed(seed), **shared)
        for result in results:
            print(f"face detail: {'repainted' if result.ran else 'skipped'} ({result.reason})")
        out.append(image)
    return out
