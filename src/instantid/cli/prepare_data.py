"""`instantid prepare-data`: image-caption pairs -> face records for training (manifest + embeddings)."""

from __future__ import annotations

import argparse

EXAMPLE = """\
SRC is a folder of images with a .txt caption beside each (photo.jpg + photo.txt), a folder holding
metadata.jsonl / metadata.csv, or such a .jsonl / .csv table itself (columns file_name + caption).
Rows may name the person (column identity, person or person_id); --identity-from-folder takes it from
a sub-folder per person. Identity labels let `train --reference other` pair photos of one person.

OUT gets manifest.jsonl, embeddings/, rejected.jsonl and report.json; with --shards, WebDataset tar
shards (shards/*.tar), rejected.jsonl and index.json (written last), made by a Ray Data pipeline (a local
Ray, or the cluster at --ray-address). Rerun the same command to continue an interrupted run: finished
images (shards: finished chunks) are skipped. --from-folder converts a prepared folder into shards.

examples:
  instantid prepare-data photos/ data/                       # dlib, 128-d: free for commercial use
  instantid prepare-data captions.jsonl data/ --workers 8
  instantid prepare-data photos/ data512/ --face-backend antelopev2 --face-models ~/models   # the released 512-d
  instantid prepare-data photos/ shards/ --shards --workers 8 --shard-size 5000      # WebDataset shards, local Ray
  instantid prepare-data photos/ s/ --shards --ray-address auto --workers 64 --gpus-per-worker 0.25   # a cluster
  instantid prepare-data data/ shards/ --from-folder                                 # convert a prepared folder
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
    p.add_argument("--identity-from-folder", action="store_true",
                   help="SRC holds one sub-folder per person: its name is the identity label")
    p.add_argument("--group-identities", action="store_true",
                   help="label unlabelled photos by clustering their embeddings (dlib: distance <= 0.5, antelopev2: "
                        "cosine >= 0.5; see docs/training.md), for `train --reference other`; prepared folders only")
    p.add_argument("--identity-threshold", type=float, default=None, metavar="T",
                   help="the clustering threshold instead of the backend's default")
    sh = p.add_argument_group("shards (Ray Data + WebDataset)")
    sh.add_argument("--shards", action="store_true", help="write WebDataset tar shards with a Ray Data pipeline")
    sh.add_argument("--from-folder", action="store_true",
                    help="SRC is a prepare-data folder: convert it to shards (no face analysis)")
    sh.add_argument("--shard-size", type=int, default=1000, metavar="N",
                    help="source items per shard (default 1000; a shard holds the usable ones)")
    sh.add_argument("--shard-max-bytes", type=float, default=1e9, metavar="B",
                    help="a shard rolls over to a new tar part past B bytes (default 1e9)")
    sh.add_argument("--ray-address", default=None, metavar="ADDR",
                    help="join this Ray cluster (e.g. auto, or ray://head:10001); default: start a local Ray")
    sh.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per face-analysis actor (default 1)")
    sh.add_argument("--gpus-per-worker", type=float, default=0.0,
                    help="GPUs per face-analysis actor (fractions share a GPU; default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from ..errors import UsageError
    from ..params import face_backend_name

    if args.workers < 1 or args.min_image_size < 0 or args.min_face_size < 0:
        raise UsageError("--workers must be >= 1 and the minimum sizes >= 0")
    if args.shard_size < 1 or args.shard_max_bytes < 1 or args.cpus_per_worker <= 0 or args.gpus_per_worker < 0:
        raise UsageError("--shard-size and --shard-max-bytes must be >= 1, --cpus-per-worker > 0, --gpus-per-worker >= 0")
    if args.group_identities and (args.shards or args.from_folder):
        raise UsageError("--group-identities labels a prepared folder: run it without --shards, then convert with "
                         "--from-folder (the labels travel into the shards)")
    if args.from_folder and not (Path(args.src) / "manifest.jsonl").is_file():
        raise UsageError(f"--from-folder: {args.src} has no manifest.jsonl; pass a folder written by prepare-data")
    if not Path(args.src).exists():
        raise UsageError(f"SRC {args.src} does not exist; pass a folder of images + captions or a .jsonl/.csv table")
    from ..checks import check_output_dir

    check_output_dir(args.out, "output folder")  # before any model
    from ..training.prepare import REPORT, PrepareOptions, prepare_dataset

    if args.shards or args.from_folder:
        from ..training.prepare_shards import ShardOptions, convert_folder, prepare_shards

        shard = ShardOptions(args.shard_size, int(args.shard_max_bytes), args.ray_address, args.cpus_per_worker,
                             args.gpus_per_worker)
        if args.from_folder:
            report = convert_folder(args.src, args.out, shard)
        else:
            options = PrepareOptions(backend=face_backend_name(args.face_backend), face_models=args.face_models,
                                     min_image_size=args.min_image_size, min_face_size=args.min_face_size,
                                     workers=args.workers, progress=not args.no_progress,
                                     identity_from_folder=args.identity_from_folder)
            report = prepare_shards(args.src, args.out, options, shard)
        print(report.summary())
        print(f"index: {args.out}/index.json")
        return 0 if report.samples else 1
    options = PrepareOptions(backend=face_backend_name(args.face_backend), face_models=args.face_models, min_image_size=args.min_image_size,
                             min_face_size=args.min_face_size, workers=args.workers,
                             progress=not args.no_progress, retry_rejected=args.retry_rejected,
                             identity_from_folder=args.identity_from_folder)
    report = prepare_dataset(args.src, args.out, options)
    print(report.summary())
    if args.group_identities and report.usable:
        from ..training.identities import group_identities

        grouped = group_identities(args.out, args.identity_threshold)
        print(f"identities: {grouped['identities']} ({grouped['with_two_or_more_photos']} with two or more photos), "
              f"{grouped['rule']} threshold {grouped['threshold']}; {args.out}/identities.json")
    print(f"report: {args.out}/{REPORT}")
    return 0 if report.usable else 1
