"""The `instantid` command. One module per sub-command; heavy imports happen inside commands so
`instantid --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# sub-command name -> module under instantid.cli that defines add_parser(subparsers) and run(args)
COMMANDS = {
    "faces": "faces",
    "generate": "generate",
    "swap": "swap",
    "multi": "multi",
    "prepare-data": "prepare_data",
    "train": "train",
    "eval": "evaluate",
    "bench": "bench",
    "serve": "serve",
    "ui": "ui",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instantid",
        description="Identity-preserving image generation from one face photo (InstantID).",
        epilog="Run `instantid COMMAND --help` for a command's options and an example.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more; show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(f"{__name__}.{module_name}").add_parser(sub)
    for command in sub.choices.values():  # `instantid generate ... -v` works as well as `instantid -v generate`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="log more; show full tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from ..errors import InstantIDError

    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (InstantIDError, OSError, ValueError, MemoryError, RuntimeError) as err:
        # Known failures print one clear line; a traceback only when asked for. Library errors that slip
        # past our checks (a bug of ours: please report it) are still one line, with their type.
        if args.verbose or os.environ.get("INSTANTID_DEBUG"):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1


def one_line(err: BaseException) -> str:
    """The message of `err` for the terminal: ours as written, others prefixed by their type."""
    from ..errors import InstantIDError

    if isinstance(err, InstantIDError):
        return str(err)
    if isinstance(err, MemoryError):
        return "out of memory; ask for a smaller size or fewer images (run with -v for the traceback)"
    text = " ".join(str(err).split())[:500] or "no detail"
    return f"{type(err).__name__}: {text} (run with -v for the traceback)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
