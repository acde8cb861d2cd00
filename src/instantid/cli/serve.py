"""`instantid serve`: the HTTP API (FastAPI + uvicorn) with a durable job queue; --ray scales out on Ray Serve."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = """\
examples:
  instantid serve --tiny --state-dir /tmp/instantid-state        # offline smoke test on random weights
  instantid serve --host 0.0.0.0 --api-key "$KEY" --queue-size 32
  instantid serve --ray --replicas 2                              # one pipeline per Ray Serve replica
  instantid serve --store postgresql://instantid@db.internal/instantid --ray --ray-address HEAD:6379 \
      --replicas 8                                                # one store and queue for a multi-host cluster
  instantid serve --check-store postgresql://instantid@db.internal/instantid   # reach it, check its schema

  curl -F face=@me.jpg -F prompt="a watercolor portrait" http://127.0.0.1:8000/v1/generations
  curl -F face=@me.jpg -F prompt="a portrait" -F scheduler=dpmpp_2m_karras -F loras=style:0.7 \\
       -F face_detail=auto http://127.0.0.1:8000/v1/generations   # per-job sampler, LoRA, face detail
  curl http://127.0.0.1:8000/v1/generations/ID
  curl -o out.png http://127.0.0.1:8000/v1/generations/ID/images/0

API, limits, state folder and security model: docs/serving.md; the spec is at /openapi.json, docs at /docs."""


def add_service_options(p: argparse.ArgumentParser) -> None:
    """Model options `generate` has, for a long-running process (shared by serve and ui)."""
    from ..pipelines.conditions import CONDITION_KINDS
    from .common import add_model_options

    add_model_options(p)
    p.add_argument("--lora", action="append", default=[], metavar="SPEC[:SCALE]",
                   help="LoRA file, folder or Hub id with an optional scale (default 1.0); repeatable. Requests "
                        "choose among these by name (the file stem) with their own scales: the `loras` field")
    p.add_argument("--controlnet", action="append", default=[], choices=sorted(CONDITION_KINDS), metavar="KIND",
                   help=f"also load this extra ControlNet ({', '.join(CONDITION_KINDS)}); requests then may send "
                        "a KIND photo and KIND_scale; repeatable")
    for kind in CONDITION_KINDS.values():
        p.add_argument(f"--{kind.name}-model", default=kind.default_model,
                       help=f"{kind.name} ControlNet: Hub id or folder (default {kind.default_model})")
    p.add_argument("--state-dir", default="instantid-state", metavar="DIR",
                   help="jobs database, uploaded photos, results and face cache (default ./instantid-state)")


def add_parser(subparsers) -> None:
    from ..serving.limits import Limits
    from ..serving.store import DEFAULT_LEASE_S, DEFAULT_MAX_ATTEMPTS

    p = subparsers.add_parser("serve", help="serve the HTTP API with a durable job queue",
                              description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_service_options(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else requires an API key)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--queue-size", type=int, default=Limits.queue_size,
                   help=f"jobs that may wait; more get 429 with Retry-After (default {Limits.queue_size})")
    p.add_argument("--api-key", default=None,
                   help="require `Authorization: Bearer KEY` (default: $INSTANTID_API_KEY; none on loopback)")
    p.add_argument("--result-ttl", type=float, default=Limits.result_ttl_s, metavar="SECONDS",
                   help=f"delete finished jobs and their images after this long (default {Limits.result_ttl_s:g})")
    p.add_argument("--max-upload-mb", type=float, default=Limits.max_file_bytes / 2**20,
                   help=f"largest photo accepted (default {Limits.max_file_bytes / 2**20:g})")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin (repeatable; default: CORS off)")
    p.add_argument("--ray", action="store_true", help="run the pipelines as Ray Serve replicas (default off)")
    p.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas, one pipeline each (default 1)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join, e.g. HEAD:6379 (default: start a local Ray instance); replicas on "
                        "other hosts need --store postgresql://...")
    p.add_argument("--store", default=None, metavar="URL",
                   help="job store shared by every process and host: postgresql://USER@HOST[:PORT]/DB (password "
                        "from PGPASSWORD or ~/.pgpass rather than the URL) (default: $INSTANTID_STORE, else "
                        "SQLite in --state-dir, one host)")
    p.add_argument("--blobs", default=None, metavar="URL",
                   help="where uploaded photos and result PNGs live, an fsspec URL every host reaches "
                        "(s3://bucket/prefix, file:///shared/mount) (default: in the PostgreSQL store with --store, "
                        "else --state-dir)")
    p.add_argument("--lease-seconds", type=float, default=DEFAULT_LEASE_S, metavar="S",
                   help="a claimed job's lease, renewed while it runs; a job whose worker died goes back to the queue "
                        f"this long after its last renewal (default {DEFAULT_LEASE_S:g})")
    p.add_argument("--max-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS, metavar="N",
                   help="a job whose lease expired this many times is failed instead of retried "
                        f"(default {DEFAULT_MAX_ATTEMPTS})")
    p.add_argument("--check-store", default=None, metavar="URL", nargs="?", const="",
                   help="reach this store (or --store / $INSTANTID_STORE) and its blob store, check the schema "
                        "version, print the result and exit")
    p.set_defaults(run=run)


def check_service_args(args) -> None:
    """What `serve` and `ui` can refuse before any model loads: model options, device, the state folder."""
    from ..checks import check_output_dir
    from ..pipelines.loading import parse_lora_spec
    from .checks import check_model_options

    check_model_options(args, loras=[parse_lora_spec(spec) for spec in args.lora])
    check_output_dir(args.state_dir, "--state-dir")


def engine_config(args):
    """The serving engine's EngineConfig from the options of `serve` / `ui`."""
    from ..pipelines.loading import parse_lora_spec
    from ..serving.engine import EngineConfig
    from .common import load_options, quiet_loading

    quiet_loading(args.verbose)
    kinds = tuple(args.controlnet)
    options = load_options(args, controlnets=[getattr(args, f"{kind}_model") for kind in kinds],
                           loras=[parse_lora_spec(spec) for spec in args.lora])
    return EngineConfig(load=options, face_backend=args.face_backend, face_models=args.face_models,
                        arcface=getattr(args, "arcface", None), control_kinds=kinds)


def limits_from_args(args):
    from dataclasses import replace

    from ..errors import UsageError
    from ..serving.limits import Limits

    if args.queue_size < 1:
        raise UsageError(f"--queue-size must be at least 1, got {args.queue_size}")
    if args.max_upload_mb <= 0 or args.result_ttl <= 0:
        raise UsageError("--max-upload-mb and --result-ttl must be positive")
    file_bytes = int(args.max_upload_mb * 2**20)
    # the body must fit a few photos of the allowed size
    return replace(Limits(), queue_size=args.queue_size, result_ttl_s=args.result_ttl, max_file_bytes=file_bytes,
                   max_body_bytes=max(Limits.max_body_bytes, 4 * file_bytes))


def store_config_from_args(args, url: str | None = None):
    from ..errors import UsageError
    from ..serving.store import StoreConfig, store_url

    try:
        url = store_url(url or args.store)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.lease_seconds < 1 or args.max_attempts < 1:
        raise UsageError("--lease-seconds and --max-attempts must be at least 1")
    if args.blobs and "://" not in args.blobs:
        raise UsageError(f"--blobs must be a URL (file:///shared/mount, s3://bucket/prefix), got {args.blobs!r}")
    return StoreConfig(state_dir=str(Path(args.state_dir).expanduser()), url=url, blobs=args.blobs,
                       lease_s=args.lease_seconds, max_attempts=args.max_attempts)


def check_store(args) -> int:
    """--check-store: reach the database and the blob store, compare the schema, change nothing."""
    from ..serving.store import open_store

    config = store_config_from_args(args, args.check_store or None)
    store = open_store(config, migrate=False)
    try:
        schema = store.check_schema()
        store.blobs.ping()
        print(f"{store.describe()}: reachable, {schema}; blobs: {store.blobs.describe()} reachable")
    finally:
        store.close()
    return 0


def run(args) -> int:
    from ..errors import UsageError
    from ..serving.security import check_bind, resolve_api_key

    if args.check_store is not None:
        return check_store(args)
    api_key = resolve_api_key(args.api_key)
    check_bind(args.host, api_key)  # before anything loads
    limits = limits_from_args(args)
    store_config = store_config_from_args(args)
    if args.ray and args.replicas < 1:
        raise UsageError(f"--replicas must be at least 1, got {args.replicas}")
    if args.ray_address and not store_config.shared:
        import sys

        print("warning: --ray-address without --store: the jobs are in SQLite under --state-dir, which only "
              "replicas on this host can reach; across hosts use --store postgresql://...", file=sys.stderr)
    check_service_args(args)
    state = Path(args.state_dir).expanduser()
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--state-dir {state} cannot be created: {err}") from err

    import uvicorn

    from ..serving.app import create_app
    from ..serving.engine import Engine
    from ..serving.store import open_store

    store = open_store(store_config)  # reaches the database and migrates its schema before any model loads
    engine = Engine(engine_config(args), face_cache_dir=state / "face-cache")
    server: uvicorn.Server | None = None

    def stop_on_load_error(err):
        if server is not None:
            server.should_exit = True

    if args.ray:
        from ..serving.ray_app import RayService

        service = RayService(store, engine, limits, store_config, replicas=args.replicas, address=args.ray_address,
                             verbose=args.verbose, on_load_error=stop_on_load_error)
    else:
        from ..serving.service import LocalService

        service = LocalService(store, engine, limits, on_load_error=stop_on_load_error)
    app = create_app(service, api_key=api_key, cors_origins=tuple(args.cors_origin))
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level="info" if args.verbose else "warning"))
    print(f"instantid serve: http://{args.host}:{args.port} (jobs in {store.describe()}, blobs in "
          f"{store.blobs.describe()}; docs at /docs)", flush=True)
    server.run()
    if service.load_error:
        raise UsageError(f"the models could not be loaded: {service.load_error}")
    return 0
