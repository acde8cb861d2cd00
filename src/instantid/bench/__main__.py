"""`python -m instantid.bench ARGS`: the `instantid bench` command alone, without loading the other
commands' modules (for machines that have only what the bench needs, e.g. the GPU runner)."""

import argparse
import logging
import sys

from ..cli.bench import add_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instantid.bench", add_help=False)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return int(args.run(args) or 0)


sys.exit(main())
