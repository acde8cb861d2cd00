"""`instantid eval`: face detection, identity similarity (every available recognizer), CLIP-T/CLIP-I and
pose distance of generated images against reference photos of one person; CSV, markdown, JSON, plots."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
EXAMPLE = """\
examples:
  instantid eval --reference me.jpg --generated outdir/ --out eval/
  instantid eval --reference a.jpg --reference b.jpg --generated x.png y.png --prompt "a knight" --out eval/
  instantid eval --reference me.jpg --generated outdir/ --face-backend dlib --no-clip --out eval/
  instantid eval --suite examples/eval_suite_tiny.json --out suite-out/     # generate the grid, then score it

Per image: face found (per recognizer), face similarity (cosine to the reference identity; antelopev2 when its
models are on disk, dlib always), CLIP-T (image vs prompt) and CLIP-I (image vs reference) when a CLIP model is
on disk (--clip-model; nothing is downloaded), and the "copy-paste" axis: keypoint distance and head-pose change
(yaw/pitch/roll) to the pose reference. Prompts come from --prompts, else the PNG metadata that
`instantid generate` writes, else --prompt. Writes eval.csv, eval.md, eval.json, similarity_hist.png, grid.png."""


def add_parser(subparsers) -> None:
    from ..evaluation.clip_features import DEFAULT_CLIP_MODEL
    from .common import add_face_backend_options

    p = subparsers.add_parser("eval", help="score generated images against reference photos", description=__doc__,
                              epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", metavar="SUITE.json",
                   help="run an evaluation protocol: generate its grid (people x prompts x seeds x settings; "
                        "resumable) into --out, then score it per setting (see docs/evaluation.md)")
    p.add_argument("--reference", action="append", metavar="PHOTO",
                   help="reference photo of the person (repeat for several)")
    p.add_argument("--generated", nargs="+", metavar="PATH",
                   help="generated images, or folders of them")
    p.add_argument("--held-out", action="append", default=[], metavar="PHOTO",
                   help="another photo of the person, NOT given to the generator (repeatable): adds Sim(GT) and the "
                        "copy-paste score Sim(Ref) - Sim(GT) per image (MultiID-Bench)")
    p.add_argument("--pose-reference", metavar="PHOTO",
                   help="photo whose face layout counts as copied (default: the first reference)")
    p.add_argument("--prompt", help="prompt of every generated image (for CLIP-T), unless its PNG metadata has one")
    p.add_argument("--prompts", type=Path, metavar="FILE",
                   help="text file: one 'IMAGE_NAME<TAB>PROMPT' per line (wins over metadata and --prompt)")
    add_face_backend_options(p)
    p.add_argument("--recognizer", action="append", choices=["antelopev2", "dlib"], dest="recognizers",
                   help=argparse.SUPPRESS)  # the old name of --face-backend here; repeatable
    p.add_argument("--clip-model", default=DEFAULT_CLIP_MODEL,
                   help=f"CLIP model folder or Hub id already in the cache (default {DEFAULT_CLIP_MODEL})")
    p.add_argument("--no-clip", action="store_true", help="leave CLIP-T and CLIP-I out")
    p.add_argument("--cache-dir", metavar="DIR", help="keep face analysis results here (re-runs skip seen images)")
    p.add_argument("--no-plots", action="store_true", help="CSV, markdown and JSON only")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def expand_images(paths: list[str]) -> list[Path]:
    """Files as given, folders as their images (sorted); UsageError when nothing is left."""
    from ..errors import UsageError

    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"--generated {raw}: no such file or folder")
    if not found:
        raise UsageError(f"--generated {' '.join(paths)}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def prompt_from_metadata(path: Path) -> str | None:
    """The prompt `instantid generate` stores in the PNG `parameters` chunk, if any."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}).get("parameters")
    except OSError:
        return None
    try:
        return json.loads(text).get("prompt") if text else None
    except (ValueError, AttributeError):
        return None


def prompts_for(images: list[Path], prompt: str | None, prompts_file: Path | None) -> list[str | None]:
    by_name = {}
    if prompts_file is not None:
        for line in prompts_file.read_text(encoding="utf-8").splitlines():
            if "\t" in line:
                name, text = line.split("\t", 1)
                by_name[name.strip()] = text.strip()
    return [by_name.get(p.name) or prompt_from_metadata(p) or prompt for p in images]


def recognizers(args) -> list[str] | None:
    """The recognizers to score with: --face-backend's (auto: every one available; None), or the old
    --recognizer list."""
    return args.recognizers or (None if args.face_backend == "auto" else [args.face_backend])


def load_scorers(args) -> tuple[list, object, list[str]]:
    """(face extractors, CLIP extractor or None, notes on what is left out and why) for the options."""
    from ..evaluation.clip_features import ClipExtractor, ClipModelNotFoundError
    from ..evaluation.face_features import available_face_extractors

    extractors, notes = available_face_extractors(recognizers(args), face_models=args.face_models,
                                                  cache_dir=args.cache_dir)
    clip = None
    if args.no_clip:
        notes.append("CLIP-T and CLIP-I left out (--no-clip)")
    else:
        try:
            clip = ClipExtractor.load(args.clip_model)
        except ClipModelNotFoundError as err:
            notes.append(str(err))
            print(f"note: {err}")
    return extractors, clip, notes


def run(args) -> int:
    from ..checks import check_output_dir
    from ..errors import UsageError
    from .checks import check_photo

    check_output_dir(args.out, "--out folder")  # before any model
    if args.suite:
        if args.reference or args.generated:
            raise UsageError("--suite generates and scores its own images: leave out --reference and --generated")
        return run_suite(args)
    if not args.reference or not args.generated:
        raise UsageError("give --reference and --generated (or --suite SUITE.json)")
    for photo in args.reference:
        check_photo(photo, "--reference")
    if args.pose_reference:
        check_photo(args.pose_reference, "--pose-reference")
    for photo in args.held_out:
        check_photo(photo, "--held-out")
    generated = expand_images(args.generated)
    from tqdm.auto import tqdm

    from ..evaluation.report import markdown, write_report
    from ..evaluation.scoring import evaluate

    extractors, clip, notes = load_scorers(args)
    prompts = prompts_for(generated, args.prompt, args.prompts)
    with tqdm(total=len(generated), desc="eval", unit="image", disable=args.no_progress) as bar:
        evaluation = evaluate(args.reference, generated, extractors, clip=clip, prompts=prompts,
                              pose_reference=args.pose_reference, notes=notes, on_image=lambda _: bar.update(),
                              held_out=args.held_out)
    written = write_report(evaluation, args.out, plots=not args.no_plots)
    print(markdown(evaluation))
    for path in written.values():
        print(f"wrote {path}")
    return 0


def run_suite(args) -> int:
    """`--suite SUITE.json`: generate the suite's grid (resumable), then score it per setting."""
    from ..evaluation.suite import generate_suite, load_suite
    from ..evaluation.suite_report import markdown, score_suite, write_suite_report

    suite = load_suite(args.suite)  # every check on the file before any model loads
    generate_suite(suite, args.out, progress=not args.no_progress)
    extractors, clip, notes = load_scorers(args)
    result = score_suite(suite, args.out, extractors, clip=clip, notes=notes, progress=not args.no_progress)
    written = write_suite_report(result, args.out, plots=not args.no_plots)
    print(markdown(result))
    for path in written.values():
        print(f"wrote {path}")
    return 0
