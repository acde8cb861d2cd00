"""`instantid train`: train InstantID's face adapter and IdentityNet on a prepared dataset (base frozen)."""

from __future__ import annotations

import argparse

EXAMPLE = """\
examples:
  instantid prepare-data photos/ data/
  instantid train --data_dir data/ --output_dir run1/ --mixed_precision bf16 --gradient_checkpointing
  accelerate launch --num_processes 8 -m instantid train --data_dir data/ --output_dir run1/ --mixed_precision bf16
  instantid train --data_dir data/ --output_dir run1/ --resume_from_checkpoint latest
  instantid train --family flux --base black-forest-labs/FLUX.1-dev --data_dir data/ --output_dir flux1/ \\
      --mixed_precision bf16 --gradient_checkpointing --use_8bit_adam [--adapter_branch]

The base family (SD1.5, SDXL or FLUX) is read from --base; the embedding size from the data (dlib 128-d,
antelopev2 512-d, infiniteyou 512-d). FLUX runs write InfiniteYou's layout (InfuseNetModel/ +
image_proj_model.bin). Results load directly for generation:
  instantid generate --base BASE --identitynet run1/ControlNetModel --adapter run1/ip-adapter.bin \\
      --face-backend dlib --face me.jpg --prompt "..." --out out.png
See docs/training.md for memory needs and multi-GPU use."""


def add_parser(subparsers) -> None:
    from ..training.args import add_training_arguments

    p = subparsers.add_parser("train", help="train the face adapter and IdentityNet (see docs/training.md)",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(p)
    p.set_defaults(run=run)


def _quiet_libraries() -> None:
    """diffusers/transformers log loading chatter as warnings; keep the terminal to training's own output."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


def run(args) -> int:
    from ..training.args import check_args

    check_args(args)  # before torch, diffusers and accelerate load: a bad option fails in milliseconds
    from ..training.train import train

    if not getattr(args, "verbose", False):
        _quiet_libraries()
    result = train(args)
    if result.exported:
        print(f"trained {result.global_step} steps; fixed-batch loss {result.fixed_batch_loss_before:.4f} -> "
              f"{result.fixed_batch_loss_after:.4f}")
        print(f"wrote {result.exported['identitynet']} and {result.exported['adapter']}")
    return 0
