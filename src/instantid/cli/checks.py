"""Pre-load checks of the generating commands' options: everything that can be refused without a model
is refused here, in seconds, before the face analyzer or any pipeline loads."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..checks import check_device, check_finite, check_input_file, check_json_object, check_output_file
from ..errors import CheckpointError, ImageReadError, UsageError, WeightsNotFoundError
from ..limits import OUTPUT_PIXELS_ENV, check_output_size, check_photo_count, check_prompt, memory_warning
from ..output import check_out_arg

MAX_YAW_DEGREES = 90.0  # a full profile; past it the keypoints would be behind the head
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


def check_positive_finite(value, flag: str, *, allow_zero: bool = False) -> float:
    number = check_finite(value, flag)
    if number < 0 or (number == 0 and not allow_zero):
        raise UsageError(f"{flag} must be {'>= 0' if allow_zero else '> 0'}, got {number:g}")
    return number


def _has_accelerator() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or (mps is not None and mps.is_available())


def check_model_options(args) -> None:
    """Device, --tiny's ignored options, and local model paths that do not exist or are not what they claim."""
    from ..pipelines.hub import DEFAULT_BASE, RELEASED_REPO, looks_like_local_path

    check_device(args.device)
    if args.tiny:
        ignored = [flag for flag, value, default in (("--base", args.base, DEFAULT_BASE),
                                                     ("--identitynet", args.identitynet, RELEASED_REPO),
                                                     ("--adapter", args.adapter, RELEASED_REPO)) if value != default]
        if ignored:
            print(f"warning: --tiny uses tiny random weights; {', '.join(ignored)} ignored")
        return
    for flag, spec in (("--base", args.base), ("--identitynet", args.identitynet), ("--adapter", args.adapter)):
        path = Path(spec).expanduser()
        if not _exists(path, flag, CheckpointError):
            if looks_like_local_path(spec):
                raise WeightsNotFoundError(f"{flag} {spec} not found; pass an existing file or folder (or a Hub id)")
            continue  # a Hub id: resolved (cache or download) when loading
        if path.is_dir():
            if flag == "--identitynet":
                check_controlnet_config(path / "ControlNetModel" if (path / "ControlNetModel").is_dir() else path, flag)
            continue
        check_input_file(path, f"{flag} file", error=CheckpointError)
        if flag == "--adapter":
            from ..models.adapter import check_adapter_file_header

            check_adapter_file_header(path)


def _exists(path: Path, what: str, error: type) -> bool:
    """Path.exists, but a path the system cannot even look up (too long, a loop) is refused by name."""
    try:
        return path.exists()
    except OSError:
        check_input_file(path, what, error=error)  # raises with what the path is
        raise


def check_controlnet_config(folder: Path, flag: str) -> None:
    """A ControlNet folder's config.json must be a JSON object (else diffusers' error reads like a network one)."""
    if (folder / "config.json").exists():
        check_json_object(folder / "config.json", f"{flag} config.json", error=CheckpointError)


def check_lora_specs(specs: list[tuple[str, float]]) -> None:
    from ..pipelines.hub import looks_like_local_path

    for spec, scale in specs:
        check_finite(scale, f"--lora {spec} scale")
        path = Path(spec).expanduser()
        if _exists(path, "--lora file", CheckpointError):
            if not path.is_dir():
                check_input_file(path, "--lora file", error=CheckpointError)
        elif looks_like_local_path(spec) or path.suffix:
            raise CheckpointError(f"--lora file {spec} not found; check the path (Hub ids look like owner/name)")


def check_photo(path, flag: str) -> None:
    check_input_file(path, f"{flag} photo", error=ImageReadError)


def check_generate_args(args, loras: list[tuple[str, float]]) -> None:
    """Everything `instantid generate` can refuse without a model."""
    from ..pipelines.conditions import CONDITION_KINDS
    from ..params import generation_values
    from ..pipelines.styles import get_style

    check_out_arg(args.out)
    check_photo_count(len(args.face))
    check_prompt(args.prompt)
    check_prompt(args.negative_prompt, "--negative-prompt")
    check_model_options(args)
    from .common import family_of_args

    values = generation_values(vars(args), tiny=args.tiny, family=family_of_args(args))
    get_style(args.style, args.styles_file)
    problems = []
    for face in args.face:  # unreadable references are skipped later, but not all of them
        try:
            check_photo(face, "--face")
        except ImageReadError as err:
            problems.append(str(err))
    if len(problems) == len(args.face):
        raise ImageReadError("no readable --face photo: " + "; ".join(problems))
    if args.pose:
        check_photo(args.pose, "--pose")
    for kind in CONDITION_KINDS.values():
        if getattr(args, kind.name):
            check_photo(getattr(args, kind.name), f"--{kind.name}")
            check_finite(getattr(args, f"{kind.name}_scale"), f"--{kind.name}-scale")
    if args.interpolate and args.yaw:
        raise UsageError("use either --interpolate or --yaw, not both")
    if args.interpolate:
        check_photo(args.interpolate, "--interpolate")
        bad = [w for w in args.weights if not 0.0 <= w <= 1.0]
        if bad:
            raise UsageError(f"--weights must lie in [0, 1] (0 = --face, 1 = --interpolate), got {bad[0]}")
    if args.yaw:
        bad = [d for d in args.yaw if abs(d) > MAX_YAW_DEGREES]
        if bad:
            raise UsageError(f"--yaw angles must lie in [-{MAX_YAW_DEGREES:g}, {MAX_YAW_DEGREES:g}] degrees, got {bad[0]:g}")
    if args.kps is not None:
        from ..face.keypoints import check_kps  # numpy and OpenCV: not at --help time

        check_kps(args.kps, "--kps")
    check_lora_specs(loras)
    if values["width"] and values["height"]:  # last: its memory warning asks torch whether a GPU is there
        check_size(args, values["width"], values["height"], values["num_images_per_prompt"])


def check_common_args(args, photos=()) -> None:
    """What `swap` and `multi` can refuse without a model: --out, prompts, device and model paths, photo files."""
    check_out_arg(args.out)
    check_prompt(args.prompt)
    check_prompt(getattr(args, "negative_prompt", None), "--negative-prompt")
    check_model_options(args)
    from .common import family_of_args

    if family_of_args(args) == "flux":
        raise UsageError("face swap and several identities are not available for the FLUX family yet; use "
                         "`instantid generate --family flux`, or the SDXL family here")
    for scale in getattr(args, "scale", None) or []:
        check_positive_finite(scale, "--scale", allow_zero=True)
    for flag, path in photos:
        if path:
            check_photo(path, flag)


def check_faces_args(args) -> None:
    """Everything `instantid faces` can refuse before the analyzer loads."""
    check_photo(args.image, "IMAGE")
    if args.kps_out:
        check_output_file(args.kps_out, "--kps-out file", suffixes=KPS_OUT_SUFFIXES, create_parents=False)
