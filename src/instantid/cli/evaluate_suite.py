"""`instantid eval --suite SUITE.json`: generate the suite's grid (resumable), then score it per setting."""

from __future__ import annotations


def run_suite(args) -> int:
    from ..evaluation.suite import generate_suite, load_suite
    from ..evaluation.suite_report import markdown, score_suite, write_suite_report
    from .evaluate import load_scorers

    suite = load_suite(args.suite)  # every check on the file before any model loads
    generate_suite(suite, args.out, progress=not args.no_progress)
    extractors, clip, notes = load_scorers(args)
    result = score_suite(suite, args.out, extractors, clip=clip, notes=notes, progress=not args.no_progress)
    written = write_suite_report(result, args.out, plots=not args.no_plots)
    print(markdown(result))
    for path in written.values():
        print(f"wrote {path}")
    return 0
