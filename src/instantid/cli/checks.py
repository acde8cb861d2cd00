"""Pre-load checks of the generating commands' options: everything that can be refused without a model
is refused here, in seconds, before the face analyzer or any pipeline loads."""

from __future__ import annotations

import argparse
import math

from ..checks import check_input_file, check_output_file
from ..errors import ImageReadError, UsageError
from ..limits import OUTPUT_PIXELS_ENV, check_output_size, memory_warning
from ..output import check_out_arg

KPS_OUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def finite_list(text: str) -> list[float]:
    """argparse type: comma-separated finite numbers ("nan" and "inf" are refused here, not later)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {bad[0]} in {text!r}")
    return values


def add_limit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help=f"output pixel cap (width x height; default 262144 with --tiny, 4194304 otherwise, or "
                        f"${OUTPUT_PIXELS_ENV}): raise it only with the memory for it")


def model_family(args) -> str:
    """The family whose output cap applies (instantid.limits): tiny, flux or sdxl."""
    if getattr(args, "tiny", False):
        return "tiny"
    from .common import family_of_args

    return "flux" if hasattr(args, "identitynet") and family_of_args(args) == "flux" else "sdxl"


def check_size(args, width: int, height: int, images: int, smaller: str = "--width/--height") -> None:
    """The output pixel cap (limits.check_output_size, as every pipeline call applies it; the stricter --tiny cap
    here), before any model loads; and, for a CPU run, a warning when the memory estimate exceeds what is free."""
    check_output_size(width, height, images, model_family(args), getattr(args, "max_pixels", None), smaller)
    device = getattr(args, "device", "auto")
    if device == "cpu" or (device == "auto" and not _has_accelerator()):
        warning = memory_warning(width, height, images, model_family(args))
        if warning:
            print(f"warning: {warning}")


def limit_kwargs(args) -> dict:
    """The library entries' keyword for --max-pixels (their pipeline calls apply the same cap)."""
    return {"max_output_pixels": args.max_pixels} if getattr(args, "max_pixels", None) is not None else {}


def _has_accelerator() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or (mps is not None and mps.is_available())


def check_model_options(args, controlnets=(), loras=()) -> None:
    """The model options' library checks (LoadOptions.check: device, model and LoRA paths), warnings printed."""
    from .common import load_options

    for warning in load_options(args, controlnets, loras).check():
        print(f"warning: {warning}")


def check_photo(path, flag: str) -> None:
    check_input_file(path, f"{flag} photo", error=ImageReadError)


def check_request_args(args, *, skip=frozenset(), photos: int = 0, loras=()) -> tuple[dict, dict]:
    """The library's checks of the model options and of the request (pipelines/request.check_request), with
    the CLI's flags in the errors; returns (generation values, per-job knobs)."""
    from ..pipelines.request import check_request
    from .common import family_of_args

    check_model_options(args, loras=loras)
    return check_request(vars(args), family=family_of_args(args), tiny=args.tiny, skip=skip, photos=photos,
                         styles_file=getattr(args, "styles_file", None))


def check_generate_args(args, loras: list[tuple[str, float]]) -> tuple[dict, dict]:
    """Everything `instantid generate` can refuse without a model; returns (generation values, per-job knobs)."""
    from ..pipelines.conditions import CONDITION_KINDS

    check_out_arg(args.out)
    values, job = check_request_args(args, photos=len(args.face), loras=loras)
    problems = []
    for face in args.face:  # unreadable references are skipped later, but not all of them
        try:
            check_photo(face, "--face")
        except ImageReadError as err:
            problems.append(str(err))
    if len(problems) == len(args.face):
        raise ImageReadError("no readable --face photo: " + "; ".join(problems))
    for flag, photo in (("--pose", args.pose), ("--interpolate", args.interpolate)):
        if photo:
            check_photo(photo, flag)
    for kind in CONDITION_KINDS.values():
        if getattr(args, kind.name):
            check_photo(getattr(args, kind.name), f"--{kind.name}")
    if values["width"] and values["height"]:  # last: its memory warning asks torch whether a GPU is there
        check_size(args, values["width"], values["height"], values["num_images_per_prompt"])
    return values, job


def check_common_args(args, photos=(), *, skip=frozenset()) -> tuple[dict, dict]:
    """What `swap` and `multi` can refuse without a model: --out, the family, the request (check_request_args: model
    options, prompts, the table's values but `skip`), photo files. Returns (generation values, per-job knobs)."""
    check_out_arg(args.out)
    from .common import family_of_args

    if family_of_args(args) == "flux":
        raise UsageError("face swap and several identities are not available for the FLUX family yet; use "
                         "`instantid generate --family flux`, or the SDXL family here")
    values, job = check_request_args(args, skip=skip)
    for flag, path in photos:
        if path:
            check_photo(path, flag)
    return values, job


def entry_options(job: dict) -> dict:
    """The library entries' keywords among a request's per-job knobs (the sampler is a loading option)."""
    return {name: value for name, value in job.items() if name != "scheduler"}


def check_faces_args(args) -> None:
    """Everything `instantid faces` can refuse before the analyzer loads."""
    check_photo(args.image, "IMAGE")
    if args.kps_out:
        check_output_file(args.kps_out, "--kps-out file", suffixes=KPS_OUT_SUFFIXES, create_parents=False)
