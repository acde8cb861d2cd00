"""`instantid prepare-data`: image-caption pairs -> face records for training (manifest + embeddings)."""

from __future__ import annotations

import argparse

EXAMPLE = """\
SRC is a folder of images with a .txt caption beside each (photo.jpg + photo.txt), a folder holding
metadata.jsonl / metadata.csv, or such a .jsonl / .csv table itself (columns file_name + caption).
WebDataset shards are not read: unpack them into a folder first.

OUT gets manifest.jsonl, embeddings/, rejected.jsonl and report.json. Rerun the same command to
continue an interrupted run: finished images are skipped.

examples:
  instantid prepare-data photos/ data/                       # dlib, 128-d: free for commercial use
  instantid prepare-data captions.jsonl data/ --workers 8
  instantid prepare-data photos/ data512/ --face-backend antelopev2 --face-models ~/models   # the released 512-d
"""


def add_parser(subparsers) -> None:
    from .common import add_face_backend_options

    p = subparsers.add_parser("prepare-data", help="analyse faces in image-caption pairs for training",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="folder of images + .txt captions, or a .jsonl/.csv table")
    p.add_argument("out", metavar="OUT", help="output folder (created; reused to resume)")
    add_face_backend_options(p, legacy_backend_flag=True)
    p.add_argument("--min-image-size", type=int, default=512, metavar="PX",
                   help="leave out images whose shorter side is below PX (default 512)")
    p.add_argument("--min-face-size", type=int, default=64, metavar="PX",
                   help="leave out images whose largest face is below PX on its shorter side (default 64)")
    p.add_argument("--workers", type=int, default=1, help="parallel face-analysis processes (default 1)")
    p.add_argument("--retry-rejected", action="store_true", help="analyse images an earlier run left out again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from ..errors import UsageError
    from ..params import face_backend_name

    if args.workers < 1 or args.min_image_size < 0 or args.min_face_size < 0:
        raise UsageError("--workers must be >= 1 and the minimum sizes >= 0")
    if not Path(args.src).exists():
        raise UsageError(f"SRC {args.src} does not exist; pass a folder of images + captions or a .jsonl/.csv table")
    from ..checks import check_output_dir

    check_output_dir(args.out, "output folder")  # before any model
    from ..training.prepare import REPORT, PrepareOptions, prepare_dataset

    options = PrepareOptions(backend=face_backend_name(args.face_backend), face_models=args.face_models, min_image_size=args.min_image_size,
                             min_face_size=args.min_face_size, workers=args.workers,
                             progress=not args.no_progress, retry_rejected=args.retry_rejected)
    report = prepare_dataset(args.src, args.out, options)
    print(report.summary())
    print(f"report: {args.out}/{REPORT}")
    return 0 if report.usable else 1
