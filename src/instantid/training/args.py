"""Training options: declared once, checked against each other before anything loads.

Flag names follow diffusers' training examples (`--train_batch_size`, `--checkpointing_steps`, ...) so
people who know those scripts feel at home; `--base`, `--identitynet` and `--adapter` also accept the
names `instantid generate` uses for the same things.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

from ..checks import check_output_dir
from ..errors import OutputPathError
from ..limits import MAX_TRAIN_RESOLUTION
from ..pipelines.hub import DEFAULT_BASE
from .errors import TrainingConfigError
from .references import ReferenceMode

ADAPTER_FORMATS = ("bin", "safetensors")
MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
REPORT_TO = ("auto", "tensorboard", "none")
FAMILIES = ("auto", "sdxl", "sd15", "flux")
WEIGHTING_SCHEMES = ("none", "logit_normal", "mode", "sigma_sqrt", "cosmap")  # diffusers' training_utils names


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """Every `instantid train` option (shared by the CLI and `parse_args`)."""
    data = p.add_argument_group("data and models")
    data.add_argument("--data_dir", required=True, metavar="DIR",
                      help="a folder written by `instantid prepare-data` (manifest.jsonl, embeddings/, dataset.json)")
    data.add_argument("--output_dir", required=True, metavar="DIR",
                      help="where checkpoints, validation images, logs and the final weights go")
    data.add_argument("--pretrained_model_name_or_path", "--base", dest="pretrained_model_name_or_path",
                      default=DEFAULT_BASE, metavar="BASE",
                      help=f"SD1.5-, SDXL- or FLUX-family base, a diffusers folder or Hub id (default {DEFAULT_BASE}); "
                           "the family is read from its config")
    data.add_argument("--family", choices=FAMILIES, default="auto",
                      help="base family; auto (default) reads it from --base. flux: InstantID on FLUX in InfiniteYou's "
                           "layout (InfuseNetModel/ + image_proj_model.bin), flow-matching objective")
    data.add_argument("--identitynet", "--controlnet_model_name_or_path", dest="identitynet", default=None,
                      metavar="DIR", help="start IdentityNet from these weights (a ControlNetModel folder, e.g. the "
                                          "released one; FLUX: an InfuseNetModel folder) instead of a copy of the base")
    data.add_argument("--adapter", "--pretrained_ip_adapter_path", dest="adapter", default=None, metavar="FILE",
                      help="start the face adapter from this ip-adapter.bin / .safetensors (FLUX: image_proj_model.bin) "
                           "instead of fresh weights")
    data.add_argument("--resampler_width", type=int, default=1280,
                      help="width of a fresh Resampler, a multiple of 64 (default 1280, as released)")
    data.add_argument("--num_tokens", type=int, default=None,
                      help="face tokens of a fresh Resampler (default 16; FLUX 8, as InfiniteYou)")

    flux = p.add_argument_group("FLUX family (--family flux)")
    flux.add_argument("--adapter_branch", action="store_true",
                      help="also train InstantID's image-adapter branch inside the DiT's double-stream attention "
                           "(diffusers' FLUX IP-Adapter processors reading the face tokens); InfiniteYou has none")
    flux.add_argument("--identitynet_layers", type=int, default=4,
                      help="double-stream blocks of a fresh FLUX IdentityNet, copied from the DiT's first ones (default 4)")
    flux.add_argument("--identitynet_single_layers", type=int, default=10,
                      help="single-stream blocks of a fresh FLUX IdentityNet (default 10, as InfuseNet)")
    flux.add_argument("--weighting_scheme", choices=WEIGHTING_SCHEMES, default="none",
                      help="noise-level sampling and loss weighting, as diffusers' FLUX examples (default none: uniform)")
    flux.add_argument("--logit_mean", type=float, default=0.0, help="logit_normal's mean (default 0)")
    flux.add_argument("--logit_std", type=float, default=1.0, help="logit_normal's std (default 1)")
    flux.add_argument("--mode_scale", type=float, default=1.29, help="the mode scheme's scale (default 1.29)")
    flux.add_argument("--guidance_scale", type=float, default=3.5,
                      help="distilled-guidance value the DiT gets while training, for bases with a guidance embedding "
                           "(FLUX.1-dev; default 3.5); schnell-type bases have none")

    shape = p.add_argument_group("images")
    shape.add_argument("--resolution", type=int, default=None,
                       help="training pixel area is resolution^2 (default: the base's native size: 1024 SDXL, 512 SD1.5)")
    shape.add_argument("--max_aspect_ratio", type=float, default=2.0,
                       help="aspect-ratio buckets span 1/R..R (default 2.0); 1.0 trains on squares only")

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--train_batch_size", type=int, default=2, help="batch per device (default 2, as the paper)")
    opt.add_argument("--num_train_epochs", type=int, default=1, help="epochs, unless --max_train_steps is given")
    opt.add_argument("--max_train_steps", type=int, default=None, help="optimizer steps in total (overrides epochs)")
    opt.add_argument("--gradient_accumulation_steps", type=int, default=1)
    opt.add_argument("--gradient_checkpointing", action="store_true", help="much less activation memory for ~50%% more time per step")
    opt.add_argument("--learning_rate", type=float, default=1e-5, help="default 1e-5")
    opt.add_argument("--lr_scheduler", choices=LR_SCHEDULERS, default="constant")
    opt.add_argument("--lr_warmup_steps", type=int, default=0)
    opt.add_argument("--adam_beta1", type=float, default=0.9)
    opt.add_argument("--adam_beta2", type=float, default=0.999)
    opt.add_argument("--adam_weight_decay", type=float, default=1e-2)
    opt.add_argument("--adam_epsilon", type=float, default=1e-8)
    opt.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping (0 turns it off)")
    opt.add_argument("--use_8bit_adam", action="store_true", help="bitsandbytes' 8-bit AdamW (pip install bitsandbytes)")
    opt.add_argument("--mixed_precision", choices=MIXED_PRECISION, default=None,
                     help="frozen weights in this dtype, trainable ones stay fp32 (default: accelerate's config)")
    opt.add_argument("--allow_tf32", action="store_true", help="TF32 matmuls on Ampere+ GPUs")
    opt.add_argument("--text_dropout", type=float, default=0.0,
                     help="probability of training a sample with the empty caption (default 0: the paper drops nothing)")
    opt.add_argument("--face_dropout", type=float, default=0.0,
                     help="probability of training a sample with a zero face embedding, the CFG negative (default 0)")
    opt.add_argument("--cache_latents", action="store_true",
                     help="encode every image with the VAE once, before training, and reuse the latents")
    opt.add_argument("--cache_text_embeddings", action="store_true",
                     help="encode every caption once, before training (text encoders then leave the GPU)")
    opt.add_argument("--dataloader_num_workers", type=int, default=0)
    opt.add_argument("--shuffle_buffer", type=int, default=1000,
                     help="samples in each data-loader worker's shuffle buffer when streaming shards (default 1000)")
    opt.add_argument("--reference", default="same", metavar="same|other|mixed:P",
                     help="whose face embedding conditions a sample: its own (same, the paper), another photo of the "
                          "same person (other; needs identity labels) or other with probability P (default same)")
    opt.add_argument("--threads", type=int, default=None,
                     help="CPU threads for torch (default: torch's choice, all cores); useful for CPU runs on shared machines")
    opt.add_argument("--seed", type=int, default=0, help="seed for weights, data order, noise (default 0)")

    ckpt = p.add_argument_group("checkpoints")
    ckpt.add_argument("--checkpointing_steps", type=int, default=500,
                      help="save a resumable checkpoint (with the weights in the released layout) every N steps")
    ckpt.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep only the newest N checkpoints")
    ckpt.add_argument("--resume_from_checkpoint", default=None, metavar="DIR|latest",
                      help="continue from a checkpoint folder, or the newest one in --output_dir")
    ckpt.add_argument("--adapter_format", choices=ADAPTER_FORMATS, default="bin",
                      help="ip-adapter.bin (torch.save, as released) or ip-adapter.safetensors")

    val = p.add_argument_group("validation and logging")
    val.add_argument("--validation_steps", type=int, default=500, help="validation images every N steps (0: never)")
    val.add_argument("--validation_image", action="append", default=None, metavar="PHOTO",
                     help="face photo to validate with (repeatable; default: the first dataset items)")
    val.add_argument("--validation_prompt", action="append", default=None, metavar="TEXT",
                     help="prompt per validation photo, or one for all (default: the items' captions)")
    val.add_argument("--num_validation_items", type=int, default=2,
                     help="dataset items used when no --validation_image is given (default 2)")
    val.add_argument("--validation_inference_steps", type=int, default=30)
    val.add_argument("--validation_guidance_scale", type=float, default=None,
                     help="default 5.0 (SDXL/SD1.5), 3.5 (FLUX)")
    val.add_argument("--face_models", default=None, metavar="DIR",
                     help="antelopev2 model folder, to analyse --validation_image with a 512-d dataset")
    val.add_argument("--report_to", choices=REPORT_TO, default="auto",
                     help="auto = TensorBoard when installed, otherwise no tracker (logged once)")
    val.add_argument("--logging_dir", default="logs", help="tracker folder, inside --output_dir")
    val.add_argument("--tracker_project_name", default="instantid")


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    """Parse and check training options (`input_args` for tests; default: sys.argv)."""
    parser = argparse.ArgumentParser(prog="instantid train", description="Train InstantID's adapter and IdentityNet.")
    add_training_arguments(parser)
    args = parser.parse_args(input_args)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuse contradictory or out-of-range options, naming the flag and the fix."""
    problems = []

    def positive(name: str, allow_zero: bool = False):
        value = getattr(args, name)
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            problems.append(f"--{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")

    for name in ("train_batch_size", "num_train_epochs", "max_train_steps", "gradient_accumulation_steps",
                 "learning_rate", "resolution", "num_tokens", "checkpointing_steps", "checkpoints_total_limit",
                 "validation_inference_steps", "num_validation_items", "identitynet_layers",
                 "identitynet_single_layers", "logit_std"):
        positive(name)
    for name in ("lr_warmup_steps", "validation_steps", "dataloader_num_workers", "max_grad_norm"):
        positive(name, allow_zero=True)
    for name, value in sorted(vars(args).items()):
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"--{name} must be a finite number, got {value}")
    if args.resolution is not None and args.resolution > MAX_TRAIN_RESOLUTION:
        problems.append(f"--resolution {args.resolution} is above the {MAX_TRAIN_RESOLUTION} limit (training memory "
                        "grows with its square; SDXL trains at 1024, SD1.5 at 512)")
    if getattr(args, "threads", None) is not None and args.threads < 1:
        problems.append(f"--threads must be >= 1, got {args.threads}")
    try:
        check_output_dir(args.output_dir, "--output_dir")
    except OutputPathError as err:
        problems.append(str(err))
    for name in ("text_dropout", "face_dropout"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            problems.append(f"--{name} is a probability: between 0 and 1, got {getattr(args, name)}")
    if args.max_aspect_ratio < 1.0:
        problems.append(f"--max_aspect_ratio must be >= 1 (1 = squares only), got {args.max_aspect_ratio}")
    if args.resampler_width <= 0 or args.resampler_width % 64:
        problems.append(f"--resampler_width must be a positive multiple of 64 (64-d heads), got {args.resampler_width}")
    prompts, images = args.validation_prompt or [], args.validation_image or []
    if images and len(prompts) not in (0, 1, len(images)):
        problems.append(f"give one --validation_prompt for all {len(images)} --validation_image, or one each; "
                        f"got {len(prompts)}")
    if prompts and not images and len(prompts) not in (1, args.num_validation_items):
        problems.append(f"without --validation_image, give one --validation_prompt or {args.num_validation_items} "
                        f"(--num_validation_items); got {len(prompts)}")
    for photo in images:
        if not Path(photo).is_file():
            problems.append(f"--validation_image {photo} does not exist")
    if not any((Path(args.data_dir) / name).is_file() for name in ("manifest.jsonl", "index.json")):
        problems.append(f"--data_dir {args.data_dir} has neither manifest.jsonl nor index.json (shards); run "
                        f"`instantid prepare-data SRC {args.data_dir}` (add --shards for shards) first")
    try:
        ReferenceMode.parse(args.reference)
    except TrainingConfigError as err:
        problems.append(str(err))
    if args.shuffle_buffer < 1:
        problems.append(f"--shuffle_buffer must be >= 1, got {args.shuffle_buffer}")
    resume = args.resume_from_checkpoint
    if resume and resume != "latest" and not Path(resume).is_dir():
        problems.append(f"--resume_from_checkpoint {resume} is not a folder; pass a checkpoint-N folder or 'latest'")
    if args.use_8bit_adam and importlib.util.find_spec("bitsandbytes") is None:
        problems.append("--use_8bit_adam needs bitsandbytes: pip install bitsandbytes (or drop the flag)")
    if args.report_to == "tensorboard" and not tensorboard_available():
        problems.append("--report_to tensorboard needs TensorBoard: pip install tensorboard "
                        "(or --report_to auto / none)")
    if args.adapter_branch and args.family not in ("auto", "flux"):
        problems.append("--adapter_branch is the FLUX family's option (SDXL/SD1.5 always train the adapter); "
                        "drop it or use --family flux")
    if problems:
        raise TrainingConfigError("invalid training options:\n  " + "\n  ".join(problems))


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None
