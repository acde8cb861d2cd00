"""`instantid bench`: time InstantID against the stock diffusers pipelines, stage by stage, with peak memory."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

EXAMPLE = """\
examples:
  instantid bench --arch tiny                      # seconds: checks the harness
  instantid bench --random-weights --arch sdxl --size 256 --steps 6 --dtype bfloat16 --runs 3
  instantid bench --random-weights --arch sdxl --offload --pipelines instantid --control-end 1.0
  instantid bench --arch sdxl --base stabilityai/stable-diffusion-xl-base-1.0   # real weights (downloads)
  instantid bench --family flux                    # FLUX memory profiles on the tiny family: one case each
  instantid bench --family flux --base black-forest-labs/FLUX.1-dev --size 1024 --steps 30 --memory-profiles full 8bit

Runs stock SDXL, the stock SDXL ControlNet pipeline and InstantID on the same modules at equal settings,
interleaved (A B C A B C ...), and prints medians, per-stage seconds (prompt encoding, face projection,
UNet, ControlNet/IdentityNet, VAE decode), peak memory (RSS; CUDA peaks on a GPU) and time ratios.
--random-weights builds the architecture with random weights: nothing is downloaded, timings and memory are
real, images are noise. Speed options (--attention, --channels-last, --compile, --offload, --vae-tiling,
--vae-slicing, --num-images) apply to every compared pipeline alike. --family flux times the FLUX family's
memory profiles instead (bench/flux.py): seconds per image, peak memory and the latent cost of each."""


def add_parser(subparsers) -> None:
    from ..bench.settings import ARCHES, INSTANTID_SPEEDUPS, PIPELINES
    from ..pipelines.speed import ATTENTION_CHOICES
    from ..params import PARAMS_BY_NAME
    from .common import add_face_backend_options, add_param_option, add_speed_options

    p = subparsers.add_parser("bench", help="time and memory of InstantID vs the stock pipelines",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    from ..pipelines.memory import PROFILES

    p.add_argument("--family", choices=("sdxl", "flux"), default="sdxl",
                   help="sdxl: InstantID against the stock pipelines (default); flux: one case per FLUX memory profile")
    p.add_argument("--memory-profiles", nargs="+", choices=list(PROFILES), default=list(PROFILES), metavar="PROFILE",
                   help=f"FLUX profiles to measure (default all: {', '.join(PROFILES)})")
    p.add_argument("--arch", choices=list(ARCHES), default="tiny",
                   help="sdxl: the full SDXL + IdentityNet + adapter architecture; tiny: the test models (default)")
    p.add_argument("--random-weights", action="store_true",
                   help="random weights of the architecture, no download (always so for --arch tiny)")
    p.add_argument("--base", help="real SDXL base (Hub id, folder, .safetensors), without --random-weights")
    p.add_argument("--identitynet", help="real IdentityNet (Hub id or folder)")
    p.add_argument("--adapter", help="real face adapter (ip-adapter.bin or Hub id)")
    p.add_argument("--size", type=int, help="width and height in pixels (default 1024 for sdxl, 128 for tiny)")
    p.add_argument("--width", type=int, help="output width (overrides --size)")
    p.add_argument("--height", type=int, help="output height (overrides --size)")
    p.add_argument("--steps", type=int, help="denoising steps (default 30 for sdxl, 4 for tiny)")
    guidance = PARAMS_BY_NAME["guidance_scale"]
    add_param_option(p, guidance, default=guidance.default)
    p.add_argument("--control-end", type=float, nargs="+", default=[1.0, 0.5], metavar="END",
                   help="control_guidance_end values to compare (default 1.0 0.5)")
    p.add_argument("--pipelines", nargs="+", choices=list(PIPELINES), default=list(PIPELINES),
                   help="pipelines to run (default all three)")
    p.add_argument("--runs", type=int, default=3, help="timed rounds (default 3); the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--num-images", type=int, default=1, help="images per call (batched generation)")
    add_speed_options(p)
    p.add_argument("--attention", choices=list(ATTENTION_CHOICES), default="sdpa",
                   help="sdpa (torch scaled_dot_product_attention, diffusers' default) or eager")
    p.add_argument("--no-idle-step-skipping", action="store_true",
                   help="run IdentityNet also outside its control window (InstantID's default skips its idle steps)")
    p.add_argument("--compare-without", nargs="+", choices=list(INSTANTID_SPEEDUPS), default=[],
                   metavar="SPEEDUP", help="also run InstantID with one of its speed-ups off: idle-step-skipping "
                                           "(IdentityNet not run at scale 0), call-constant-reuse (face tokens and "
                                           "cross-attention K/V once per call)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 is steadier on a busy machine)")
    p.add_argument("--face", metavar="PHOTO", help="photo for the face-analysis timing (default: grace_hopper sample)")
    add_face_backend_options(p)
    p.add_argument("--no-face-stage", action="store_true", help="do not time face analysis")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and of generation")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the full record as JSON")
    p.add_argument("--markdown", type=Path, metavar="PATH", help="write the table as markdown")
    p.add_argument("--profile", type=Path, metavar="PATH",
                   help="after timing, profile one call per case with torch.profiler; write the tables here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def settings_from_args(args):
    from ..bench.settings import BenchSettings
    from ..pipelines.speed import SpeedOptions
    from ..params import face_backend_name

    options = SpeedOptions(attention=args.attention, channels_last=args.channels_last, compile=args.compile,
                           offload=args.offload, vae_tiling=args.vae_tiling, vae_slicing=args.vae_slicing)
    return BenchSettings(
        arch=args.arch, random_weights=args.random_weights or args.arch == "tiny",
        base=args.base, identitynet=args.identitynet, adapter=args.adapter,
        width=args.width or args.size, height=args.height or args.size, steps=args.steps,
        guidance_scale=args.guidance_scale, control_ends=tuple(args.control_end), pipelines=tuple(args.pipelines),
        runs=args.runs, warmup=args.warmup, num_images=args.num_images, dtype=args.dtype, device=args.device,
        options=options, idle_step_skipping=not args.no_idle_step_skipping,
        compare_without=tuple(args.compare_without), threads=args.threads, face_photo=args.face,
        face_backend="none" if args.no_face_stage else face_backend_name(args.face_backend), face_models=args.face_models,
        seed=args.seed,
    )


def flux_settings_from_args(args):
    from ..bench.flux import FluxBenchSettings

    real = bool(args.base or args.identitynet or args.adapter) and not args.random_weights
    size = args.size or (1024 if real else 128)
    return FluxBenchSettings(profiles=tuple(args.memory_profiles), tiny=not real, base=args.base,
                             identitynet=args.identitynet, adapter=args.adapter, width=args.width or size,
                             height=args.height or size, steps=args.steps or (30 if real else 4), runs=args.runs,
                             warmup=args.warmup, device=args.device, dtype=args.dtype, seed=args.seed)


def run(args) -> int:
    if args.family == "flux":
        return _run_flux(args)
    settings = settings_from_args(args)  # checked (BenchSettings) before torch and diffusers load
    from ..bench.session import run_bench

    if not args.verbose:  # model-building chatter is logged as warnings; keep the terminal to the results
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        diffusers_logging.set_verbosity_error()
        transformers_logging.set_verbosity_error()
    result = run_bench(settings, progress=not args.no_progress, profile_path=args.profile)
    print(result.markdown)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(result.markdown + "\n", encoding="utf-8")
        print(f"wrote {args.markdown}")
    return 0


def _run_flux(args) -> int:
    settings = flux_settings_from_args(args)
    from ..bench.flux import run_flux_bench
    from ..pipelines.loading import set_loading_output

    set_loading_output(verbose=args.verbose, progress_bars=False)
    table, record = run_flux_bench(settings)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n", encoding="utf-8")
        print(f"wrote {args.markdown}")
    return 0
