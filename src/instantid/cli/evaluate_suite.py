"""`instantid eval --suite SUITE.json`: generate the suite's grid (resumable), then score it per setting."""

from __future__ import annotations


def run_suite(args) -> int:
    from ..evaluation.clip_features import ClipExtractor, ClipModelNotFoundError
    from ..evaluation.face_features import available_face_extractors
    from ..evaluation.suite import generate_suite, load_suite
    from ..evaluation.suite_report import markdown, score_suite, write_suite_report

    suite = load_suite(args.suite)  # every check on the file before any model loads
    generate_suite(suite, args.out, progress=not args.no_progress)
    extractors, notes = available_face_extractors(args.recognizers, face_models=args.face_models,
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
    result = score_suite(suite, args.out, extractors, clip=clip, notes=notes, progress=not args.no_progress)
    written = write_suite_report(result, args.out, plots=not args.no_plots)
    print(markdown(result))
    for path in written.values():
        print(f"wrote {path}")
    return 0
