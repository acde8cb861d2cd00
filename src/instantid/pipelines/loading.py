"""Build a ready InstantID pipeline from names: Hub ids, local folders or single checkpoint files.

`LoadOptions` is what the front ends share (the CLI's model options, a server's config): `load_pipeline(options)`
loads what it names, `--tiny`'s random weights included, and `options.model_names()` says what was loaded the
way the user named it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from ..errors import CheckpointError, WeightsNotFoundError
from . import hub
from .flux_loading import DEFAULT_VARIANT
from .loading_steps import default_device, default_dtype, load_loras
from .memory import DEFAULT_PROFILE

if TYPE_CHECKING:  # torch loads with the models; building LoadOptions needs none of it
    import torch

logger = logging.getLogger(__name__)

_SINGLE_FILE_SUFFIXES = {".safetensors", ".ckpt"}
# Files a diffusers SDXL base needs; skips the repo's duplicate single-file, ONNX and Flax weights.
BASE_FILE_PATTERNS = ["model_index.json", "*/config.json", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors",
                  "*/model.safetensors"]
BASE_FILE_PATTERNS_FP16 = ["model_index.json", "*/config.json", "*/*.json", "*/*.txt",
                       "*/diffusion_pytorch_model.fp16.safetensors", "*/model.fp16.safetensors"]
DTYPES = ("auto", "float32", "float16", "bfloat16")  # auto = float16 on a GPU, float32 on the CPU
TINY = "tiny"  # how model_names() names tiny random weights


@dataclass(frozen=True)
class LoadOptions:
    """What to load and how. `tiny`: tiny random weights for the base, IdentityNet, adapter and the extra
    ControlNets left at their default models (offline; the image is noise)."""

    base: str = hub.DEFAULT_BASE
    identitynet: str = hub.RELEASED_REPO
    adapter: str = hub.RELEASED_REPO
    controlnets: tuple[str, ...] = ()  # extra ControlNets beside IdentityNet (they see the text)
    loras: tuple[tuple[str, float], ...] = ()  # (file, folder or Hub id; scale)
    tiny: bool = False
    device: str = "auto"  # auto = cuda, else mps, else cpu
    dtype: str = "auto"  # a name of DTYPES
    scheduler: str | None = None  # a name of pipelines/schedulers.py; None: the base model's own
    offload: bool = False
    channels_last: bool = False
    compile: bool = False
    vae_tiling: bool = False
    vae_slicing: bool = False
    family: str = "auto"  # "auto" (read from IdentityNet's config, or the FLUX release's Hub id), "sdxl"/"sd15", "flux"
    memory: str = DEFAULT_PROFILE  # FLUX memory profile (pipelines/memory.py)
    variant: str = DEFAULT_VARIANT  # InfiniteYou variant (FLUX)

    def resolved_family(self) -> str:
        """"flux" or the UNet families' "sdxl" (SD1.5 is told apart from IdentityNet once it loads), from the
        options alone: named, or read from a local IdentityNet folder's config.json, or the FLUX release's id."""
        from .flux_loading import INFINITEYOU_REPO, looks_like_flux_identitynet

        if self.family != "auto":
            return self.family
        if not self.tiny and (str(self.identitynet) == INFINITEYOU_REPO or looks_like_flux_identitynet(self.identitynet)):
            return "flux"
        return "sdxl"

    def family_models(self) -> tuple[str, str, str]:
        """(base, identitynet, adapter) with the SDXL release's defaults replaced by the FLUX release's for FLUX."""
        if self.resolved_family() != "flux":
            return self.base, self.identitynet, self.adapter
        from .flux_loading import FLUX_BASE, INFINITEYOU_REPO

        swap = {hub.DEFAULT_BASE: FLUX_BASE, hub.RELEASED_REPO: INFINITEYOU_REPO}
        return tuple(swap.get(str(spec), spec) for spec in (self.base, self.identitynet, self.adapter))

    def model_names(self, *, local_paths: bool = True) -> dict:
        """The models as the user named them: Hub ids and paths as given, "tiny" for tiny random weights.
        Without `local_paths` a local path is reduced to its file or folder name (what a server shows its
        clients: never a path on the server)."""
        from .conditions import CONDITION_KINDS

        defaults = {kind.default_model for kind in CONDITION_KINDS.values()}

        def name(spec, default_tiny: bool = True) -> str:
            if self.tiny and default_tiny:
                return TINY
            spec = str(spec)
            if local_paths or not hub.looks_like_local_path(spec) and not Path(spec).expanduser().exists():
                return spec
            return PurePath(spec.rstrip("/\\")).name

        base, identitynet, adapter = self.family_models()
        names = {"base": name(base), "identitynet": name(identitynet), "adapter": name(adapter),
                 "controlnets": [name(c, c in defaults) for c in self.controlnets], "tiny": self.tiny}
        if self.resolved_family() == "flux":
            names.update(family="flux", memory=self.memory, variant=self.variant)
        return names

    def check(self) -> list[str]:
        """The cheap checks a front end runs before loading: the device, LoRA scales (the table's lora_scale
        row), and local model and LoRA paths that do not exist or are not what they claim (an adapter file's
        first bytes, a ControlNet folder's config.json); Hub ids are resolved when loading. Raises the typed
        error naming the option; returns warnings for the front end to show (options --tiny ignores)."""
        from ..checks import check_device, check_input_file, check_json_object
        from ..params import JOB_PARAMS_BY_NAME

        check_device(self.device)
        for spec, scale in self.loras:
            JOB_PARAMS_BY_NAME["lora_scale"].check(scale, f"--lora {spec} scale")
            path = Path(spec).expanduser()
            if _exists(path, "--lora file"):
                if not path.is_dir():
                    check_input_file(path, "--lora file", error=CheckpointError)
            elif hub.looks_like_local_path(spec) or path.suffix:
                raise CheckpointError(f"--lora file {spec} not found; check the path (Hub ids look like owner/name)")
        models = (("--base", self.base, hub.DEFAULT_BASE), ("--identitynet", self.identitynet, hub.RELEASED_REPO),
                  ("--adapter", self.adapter, hub.RELEASED_REPO))
        if self.tiny:
            ignored = [flag for flag, spec, default in models if str(spec) != default]
            return [f"--tiny uses tiny random weights; {', '.join(ignored)} ignored"] if ignored else []
        for flag, spec, _ in models:
            path = Path(spec).expanduser()
            if not _exists(path, flag):
                if hub.looks_like_local_path(str(spec)):
                    raise WeightsNotFoundError(f"{flag} {spec} not found; pass an existing file or folder "
                                               "(or a Hub id)")
                continue  # a Hub id: resolved (cache or download) when loading
            if path.is_dir():
                folder = path / "ControlNetModel" if (path / "ControlNetModel").is_dir() else path
                # an IdentityNet config.json that is no JSON object: else diffusers' error reads like a network one
                if flag == "--identitynet" and (folder / "config.json").exists():
                    check_json_object(folder / "config.json", f"{flag} config.json", error=CheckpointError)
                continue
            check_input_file(path, f"{flag} file", error=CheckpointError)
            if flag == "--adapter":
                from ..models.adapter import check_adapter_file_header

                check_adapter_file_header(path)
        return []


def _exists(path: Path, what: str) -> bool:
    """Path.exists, but a path the system cannot even look up (too long, a loop) is refused by name."""
    from ..checks import check_input_file

    try:
        return path.exists()
    except OSError:
        check_input_file(path, what, error=CheckpointError)  # raises with what the path is
        raise


def parse_lora_spec(spec: str) -> tuple[str, float]:
    """"path:0.7" -> ("path", 0.7); a spec without a numeric suffix has scale 1.0 (the `--lora SPEC[:SCALE]`
    syntax of the front ends)."""
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return spec, 1.0


def set_loading_output(*, verbose: bool = False, progress_bars: bool = True) -> None:
    """diffusers' and transformers' loading chatter (logged as warnings) off unless `verbose`; their progress bars
    off unless `progress_bars` (a front end turns them on for a terminal only: in a log or a pipe the nested bars'
    escape codes are noise). Process-wide: for front ends to call once, at start."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    if not verbose:
        diffusers_logging.set_verbosity_error()
        transformers_logging.set_verbosity_error()
    for library in (diffusers_logging, transformers_logging):
        (library.enable_progress_bar if progress_bars else library.disable_progress_bar)()


def load_controlnet(spec: str | Path, dtype: torch.dtype | None = None, *, subfolder: str | None = None,
                    what: str = "ControlNet", hint: str = "with --controlnet", model_class=None):
    """Any diffusers ControlNetModel from a folder or Hub id, as `model_class` (default: an
    IdleSkippingControlNetModel, a ControlNetModel that skips its idle steps)."""
    import torch

    from ..models.controlnet_skip import IdleSkippingControlNetModel

    model_class = model_class or IdleSkippingControlNetModel
    dtype = dtype or torch.float32

    patterns = [f"{subfolder}/*"] if subfolder else ["config.json", "*.safetensors"]
    path = hub.resolve_dir(spec, what=what, hint=hint, subfolder=subfolder, allow_patterns=patterns)
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(f"{what} folder '{path}' has no config.json; pass a diffusers ControlNetModel folder")
    from ..checks import check_json_object

    check_json_object(path / "config.json", f"{what} config.json", error=CheckpointError)
    try:
        return model_class.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{what} in '{path}' could not be loaded: {err}") from err


def load_identitynet(spec: str | Path = hub.RELEASED_REPO, dtype: torch.dtype | None = None):
    """The released IdentityNet (a ControlNetModel folder) as an IdentityNetModel."""
    from ..models.identitynet import IdentityNetModel

    return load_controlnet(spec, dtype, subfolder=hub.RELEASED_IDENTITYNET_SUBFOLDER, what="IdentityNet",
                           hint="with --identitynet", model_class=IdentityNetModel)


def architecture_of(identitynet) -> str:
    """"sdxl" or "sd15", read from IdentityNet's config (models.architectures.family_of_config)."""
    from ..models.architectures import family_of_config

    return family_of_config(identitynet.config)


def pipeline_class(arch: str):
    """The InstantID pipeline class of a base family ("sdxl" or "sd15")."""
    from ..models.architectures import SD15, SDXL

    if arch == SDXL:
        from .sdxl import StableDiffusionXLInstantIDPipeline

        return StableDiffusionXLInstantIDPipeline
    if arch == SD15:
        from .sd15 import StableDiffusionInstantIDPipeline

        return StableDiffusionInstantIDPipeline
    raise ValueError(f"unknown architecture '{arch}'; choose sdxl or sd15")


def resolve_adapter(spec: str | Path = hub.RELEASED_REPO) -> Path:
    return hub.resolve_file(spec, filename=hub.RELEASED_ADAPTER_FILE, what="face adapter", hint="with --adapter")


def load_base(pipeline_class, spec: str | Path, controlnet, dtype: torch.dtype):
    """The base model from a single .safetensors/.ckpt file, a diffusers folder, or a Hub id."""
    import torch

    local = Path(spec).expanduser()
    try:
        if local.suffix in _SINGLE_FILE_SUFFIXES:
            if not local.is_file():
                raise WeightsNotFoundError(f"base checkpoint '{spec}' does not exist; pass an existing file with --base")
            # Single files need the architecture's config; diffusers finds it in the cache or on the Hub.
            return pipeline_class.from_single_file(str(local), controlnet=controlnet, dtype=dtype)
        patterns = BASE_FILE_PATTERNS_FP16 if dtype == torch.float16 else BASE_FILE_PATTERNS
        path = hub.resolve_dir(spec, what="base model", hint="with --base", allow_patterns=patterns)
        variant = "fp16" if dtype == torch.float16 and any(path.glob("unet/*.fp16.safetensors")) else None
        return pipeline_class.from_pretrained(path, controlnet=controlnet, dtype=dtype, variant=variant)
    except (WeightsNotFoundError, CheckpointError):
        raise
    except (OSError, ValueError) as err:
        raise WeightsNotFoundError(
            f"base model '{spec}' could not be loaded ({err.__class__.__name__}: {str(err)[:300]}). Pass a diffusers "
            "folder of the IdentityNet's architecture, a single .safetensors file (with network or a cached config), or a Hub id, with --base"
        ) from err


def load_pipeline(base: str | Path | LoadOptions = hub.DEFAULT_BASE, identitynet: str | Path = hub.RELEASED_REPO,
                  adapter: str | Path = hub.RELEASED_REPO, *, device: str | None = None,
                  dtype: torch.dtype | None = None, scheduler: str | None = None, offload: bool = False,
                  controlnets: list[str | Path] = (), loras: list[tuple[str, float]] = (),
                  embedding_dim: int = 512):
    """An InstantID pipeline (SDXL or SD1.5, read from IdentityNet) with the face adapter loaded.

    Defaults are the released weights (`InstantX/InstantID`) on SDXL base 1.0. `controlnets` are extra
    ControlNets beside IdentityNet (they see the text, IdentityNet the face); `loras` are (spec, scale).
    `load_pipeline(LoadOptions(...))` loads what the options name, speed switches applied; with `tiny`, tiny
    random weights for a face embedding of `embedding_dim` (the analyzer's).
    """
    if isinstance(base, LoadOptions):
        return _load_options(base, embedding_dim)
    from .schedulers import set_scheduler

    from ..checks import check_device

    device = check_device(device)  # DeviceError naming the devices here, before anything loads
    device = default_device() if device == "auto" else device
    dtype = dtype or default_dtype(device)
    # Resolve the small pieces first, so a missing file fails before the big download.
    adapter_path = resolve_adapter(adapter)
    identitynet = load_identitynet(identitynet, dtype)
    extra = [load_controlnet(spec, dtype) for spec in controlnets]
    pipe = load_base(pipeline_class(architecture_of(identitynet)), base, [identitynet, *extra] if extra else identitynet,
                     dtype)
    pipe.load_ip_adapter_instantid(adapter_path)
    load_loras(pipe, list(loras))
    if scheduler:
        set_scheduler(pipe, scheduler)
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


def _load_flux_options(options: LoadOptions, embedding_dim: int):
    """The FLUX family's pipeline for the options (pipelines/flux_loading.py); UNet-only switches refused."""
    import torch

    from ..errors import UsageError
    from .flux_loading import load_flux_pipeline

    unsupported = [flag for flag, on in (("--scheduler", options.scheduler), ("--channels-last", options.channels_last),
                                         ("--compile", options.compile), ("extra ControlNets", options.controlnets))
                   if on]
    if unsupported:
        raise UsageError(f"the FLUX family does not support {', '.join(unsupported)}; leave them out for FLUX models")
    base, identitynet, adapter = options.family_models()
    if options.tiny:
        from ..testing.tiny_flux import tiny_flux_cached

        tiny = tiny_flux_cached(embedding_dim=embedding_dim)
        base, identitynet, adapter = tiny.base, tiny.identitynet, tiny.adapter
    memory = "offload" if options.offload and options.memory == DEFAULT_PROFILE else options.memory
    device = default_device() if options.device == "auto" else options.device
    pipe = load_flux_pipeline(str(base), str(identitynet), str(adapter), variant=options.variant, device=device,
                              dtype=None if options.dtype == "auto" else getattr(torch, options.dtype), memory=memory,
                              loras=list(options.loras), vae_tiling=options.vae_tiling)
    if options.vae_slicing:
        pipe.vae.enable_slicing()
    return pipe


def _load_options(options: LoadOptions, embedding_dim: int):
    import torch

    if options.resolved_family() == "flux":
        return _load_flux_options(options, embedding_dim)

    from .conditions import CONDITION_KINDS
    from .speed import SpeedOptions, apply_to_modules

    base, identitynet, adapter, controlnets = options.base, options.identitynet, options.adapter, options.controlnets
    if options.tiny:
        from ..testing.tiny import tiny_instantid_cached

        tiny = tiny_instantid_cached(embedding_dim=embedding_dim)
        base, identitynet, adapter = tiny.base, tiny.identitynet, tiny.adapter
        defaults = {kind.default_model for kind in CONDITION_KINDS.values()}
        controlnets = [tiny.identitynet if spec in defaults else spec for spec in controlnets]
    device = default_device() if options.device == "auto" else options.device
    if options.offload and device == "cpu":
        logger.warning("offload moves models between GPU and CPU; on the CPU it only costs time and memory")
    pipe = load_pipeline(base, identitynet, adapter, device=device,
                         dtype=None if options.dtype == "auto" else getattr(torch, options.dtype),
                         scheduler=options.scheduler, offload=options.offload, controlnets=list(controlnets),
                         loras=list(options.loras))
    # The same switches `instantid bench` measures (one implementation of each).
    apply_to_modules(SpeedOptions(channels_last=options.channels_last, compile=options.compile,
                                  vae_tiling=options.vae_tiling, vae_slicing=options.vae_slicing),
                     unet=pipe.unet, controlnet=pipe.controlnet, vae=pipe.vae)
    return pipe
