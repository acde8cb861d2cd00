"""Training InstantID: data preparation, then the image adapter + IdentityNet on a frozen base.

    prepare-data:  prepare.prepare_dataset(src, out, PrepareOptions(...))
    train:         main(["--data_dir", ..., "--output_dir", ...])  or  train.train(args.parse_args([...]))

Modules: sources (reading image-caption pairs), prepare (face records), data (dataset, buckets, crops),
model (trainable modules on the frozen base), flux (the FLUX family's components, flow-matching loss and
InfiniteYou checkpoint layout), conditioning (frozen encoders), cache (precomputed
features), loop (loss and loop), checkpoints (released-format export, resume, rotation), validate.
Heavy libraries load when a function needs them.
"""

from __future__ import annotations


def main(input_args: list[str] | None = None):
    """Parse the options, train, return the TrainingResult (`accelerate launch -m instantid.training`)."""
    from .args import parse_args

    args = parse_args(input_args)  # options checked before torch, diffusers and accelerate load
    from .train import train

    return train(args)
