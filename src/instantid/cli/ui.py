"""`instantid ui`: a Gradio web UI on the same engine, parameter table and job layer as `instantid serve`."""

from __future__ import annotations

import argparse

EXAMPLE = """\
examples:
  instantid ui --tiny                       # offline, random weights: http://127.0.0.1:7860
  instantid ui --port 7861 --state-dir ~/.cache/instantid-ui"""


def add_parser(subparsers) -> None:
    from .serve import add_service_options

    p = subparsers.add_parser("ui", help="a web UI (Gradio) for generating in the browser",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_service_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from ..errors import UsageError
    from ..serving.security import is_loopback

    if not is_loopback(args.host):
        raise UsageError(f"--host {args.host}: the UI has no login; keep it on 127.0.0.1 and put an authenticating "
                         "proxy in front to share it")
    from .serve import check_service_args, engine_config

    check_service_args(args)
    from ..serving.ui import launch

    config = engine_config(args)
    print(f"instantid ui: http://{args.host}:{args.port}", flush=True)
    launch(config, Path(args.state_dir).expanduser(), host=args.host, port=args.port, verbose=args.verbose)
    return 0
