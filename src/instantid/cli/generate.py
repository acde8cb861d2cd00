"""`instantid generate`: face photo(s) + prompt -> PNG images with their parameters in the metadata."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from . import face_detail
from .checks import add_limit_options, check_generate_args, check_size, finite_list
from .common import add_generation_options, add_model_options, face_analyzer, generation_values, load_from_args, write_pngs

EXAMPLE = """\
example:
  instantid generate --face me.jpg --prompt "a watercolor portrait, soft light" --out out.png
  instantid generate --face a.jpg --face b.jpg --pose pose.jpg --prompt "an astronaut" --seed 7 --out outdir/
  instantid generate --face me.jpg --prompt "a chef" --style watercolor --canny scene.jpg --out chef.png
  instantid generate --face me.jpg --prompt "a (red:1.3) scarf" --prompt-weighting --lora style.safetensors:0.7 --out s.png
  instantid generate --face a.jpg --interpolate b.jpg --weights 0,0.5,1 --prompt "a portrait" --out mix.png
  instantid generate --tiny --face me.jpg --prompt "smoke test" --out tiny.png   # offline, random weights

Without --tiny the released InstantX/InstantID weights and SDXL base 1.0 are used (downloaded once into the
Hugging Face cache), with the antelopev2 face models (see `instantid faces --help`)."""


def add_parser(subparsers) -> None:
    from ..pipelines.conditions import CONDITION_KINDS
    from ..pipelines.styles import BUILTIN_STYLES

    p = subparsers.add_parser("generate", help="generate images of the person in a face photo",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--face", action="append", required=True, metavar="PHOTO",
                   help="reference photo (repeat for several photos of one person: embeddings are averaged)")
    p.add_argument("--prompt", required=True, help="what to generate")
    p.add_argument("--negative-prompt", default=None, help="what to avoid (default none)")
    p.add_argument("--face-index", type=int, default=0, metavar="N",
                   help="in group photos, use the N-th largest face of each --face photo (default 0 = largest)")
    p.add_argument("--pose", metavar="PHOTO", help="take the face keypoints (pose, placement) from this photo")
    p.add_argument("--kps", type=finite_list, metavar="X,Y,...",
                   help="explicit keypoints instead of a photo's: 10 numbers (left eye, right eye, nose, left and right "
                        "mouth corner) in output pixels")
    add_model_options(p)
    add_generation_options(p)
    add_limit_options(p)
    p.add_argument("--style", default="none",
                   help=f"style preset: {', '.join(BUILTIN_STYLES)}, or a name from --styles-file (default none)")
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
        p.add_argument(f"--{kind.name}-scale", type=float, default=kind.default_scale,
                       help=f"strength of the {kind.name} ControlNet (default {kind.default_scale})")
        p.add_argument(f"--{kind.name}-model", default=kind.default_model,
                       help=f"{kind.name} ControlNet: Hub id or folder (default {kind.default_model})")
    p.add_argument("--interpolate", metavar="PHOTO",
                   help="second identity: one image per --weights value between --face (0) and this face (1), "
                        "plus a contact sheet")
    p.add_argument("--weights", type=finite_list, default=[0.0, 0.25, 0.5, 0.75, 1.0], metavar="W,W,...",
                   help="interpolation weights in [0, 1] (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--yaw", type=finite_list, metavar="DEG,DEG,...",
                   help="head-pose variants: turn the face keypoints by these yaw angles, one image each, plus a "
                        "contact sheet; write --yaw=-30,-15,0,15,30 (with =, since the list starts with a minus)")
    face_detail.add_options(p)
    p.add_argument("--out", required=True,
                   help="output path (.png, or .jpg/.webp with the parameters in EXIF), or a folder (ends with /)")
    p.set_defaults(run=run)


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
    from ..face.image import load_for_detection
    from ..pipelines.conditions import CONDITION_KINDS

    controls = []
    for kind in CONDITION_KINDS.values():
        photo = getattr(args, kind.name)
        if photo:
            # Decoded at reduced size (never a whole huge photo in memory); annotators work at the output size.
            image = kind.annotate(load_for_detection(photo, 2 * max(size))[0], size)
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

    from ..pipelines.from_photos import face_condition
    from ..pipelines.styles import get_style
    from ..pipelines.variations import contact_sheet
    from .output import finite_images

    check_generate_args(args, [_parse_lora(spec) for spec in args.lora])  # refusals before any model loads
    values = generation_values(args)
    face_detail.check(args, values)
    analyzer = face_analyzer(args)
    # Everything that can fail on the inputs fails here, in seconds, before any model loads.
    condition = face_condition(args.face, analyzer, args.pose, face_index=args.face_index)
    width, height = condition.output_size(values.pop("width"), values.pop("height"))
    check_size(args, width, height, values["num_images_per_prompt"])
    if args.kps:
        condition = _with_explicit_kps(condition, args.kps, (width, height))
    prompt, negative_prompt = get_style(args.style, args.styles_file).apply(args.prompt, args.negative_prompt)
    controls = _extra_controls(args, (width, height))
    loras = [_parse_lora(spec) for spec in args.lora]
    series = _series(args, condition, analyzer)

    pipe, models = load_from_args(args, analyzer, controlnets=[model for model, _, _ in controls], loras=loras)
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

    metadata = {"command": "generate", "prompt": prompt, "negative_prompt": negative_prompt, "style": args.style,
                "loras": [list(lora) for lora in loras], "control_scales": [s for _, _, s in controls],
                "seed": seed, "width": width, "height": height, **values,
                "scheduler": type(pipe.scheduler).__name__, "face_backend": analyzer.name,
                "faces": [str(f) for f in args.face], "pose": args.pose, **models, **face_detail.metadata(args)}
    firsts = []
    for label, variant in series:
        kps_image = variant.kps_image(width, height)
        images = pipe(image_embeds=variant.embedding, width=width, height=height,
                      image=[kps_image, *[image for _, image, _ in controls]] if controls else kps_image,
                      generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **call).images
        images = finite_images(images)  # NaN is an error, never a black image
        images = face_detail.apply(args, pipe, images, [(variant.embedding, variant.scaled_kps(width, height))],
                                   prompt=prompt, negative_prompt=negative_prompt, seed=seed, values=call)
        write_pngs(images, args.out, {**metadata, "variant": label} if label else metadata, label)
        firsts.append(images[0])
    if len(series) > 1:
        write_pngs([contact_sheet(firsts, [label for label, _ in series])], args.out, metadata, "sheet")
    if condition.skipped:
        print("skipped: " + "; ".join(condition.skipped))
    return 0
