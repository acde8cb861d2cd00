"""What one `instantid bench` run measures: architecture, sizes, steps, dtype, pipelines, options."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..pipelines.speed import SpeedOptions

if TYPE_CHECKING:  # torch loads when a bench runs, not when the CLI builds its parser
    import torch

# --arch name -> random_sdxl size; the real-weights path always has the SDXL architecture.
ARCHES = {"sdxl": "full", "tiny": "small"}
PIPELINES = ("sdxl", "controlnet", "instantid")
# Per-architecture defaults: the full size as SDXL is used; the tiny one for seconds-long checks.
DEFAULT_RESOLUTION = {"sdxl": 1024, "tiny": 128}
DEFAULT_STEPS = {"sdxl": 30, "tiny": 4}
FACE_BACKENDS = ("dlib", "antelopev2", "none")
# InstantID's own speed-ups by name, each a pipeline attribute; `compare_without` adds cases with one turned off.
# idle-step skipping: a ControlNet at scale 0 (outside its control window) is not run; call-constant reuse:
# face tokens and cross-attention keys/values computed once per call (models/call_constants.py).
INSTANTID_SPEEDUPS = {"idle-step-skipping": "skip_idle_steps",
                      "call-constant-reuse": "reuse_call_constants"}


class BenchSettingsError(UsageError):
    """Settings that contradict each other (the message names the flags)."""


@dataclass(frozen=True)
class BenchSettings:
    arch: str = "tiny"
    random_weights: bool = True
    base: str | None = None  # real weights (random_weights=False): as in `instantid generate`
    identitynet: str | None = None
    adapter: str | None = None
    width: int | None = None  # None: the architecture's default
    height: int | None = None
    steps: int | None = None
    guidance_scale: float = 5.0
    control_ends: tuple[float, ...] = (1.0, 0.5)
    pipelines: tuple[str, ...] = PIPELINES
    runs: int = 3
    warmup: int = 1
    num_images: int = 1
    dtype: str = "auto"  # auto: float16 on CUDA, float32 on CPU
    device: str = "auto"
    options: SpeedOptions = field(default_factory=SpeedOptions)
    idle_step_skipping: bool = True
    compare_without: tuple[str, ...] = ()  # keys of INSTANTID_SPEEDUPS
    threads: int | None = None  # torch intra-op threads; None leaves torch's default
    face_photo: str | None = None  # None: a sample photo shipped with a package
    face_backend: str = "dlib"
    face_models: str | None = None  # antelopev2 model folder (as --face-models elsewhere)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise BenchSettingsError(f"--arch must be one of {', '.join(ARCHES)}, got {self.arch!r}")
        if not self.pipelines or any(p not in PIPELINES for p in self.pipelines):
            raise BenchSettingsError(f"--pipelines takes some of {', '.join(PIPELINES)}, got {list(self.pipelines)}")
        if self.runs < 1 or self.warmup < 0:
            raise BenchSettingsError(f"need --runs >= 1 and --warmup >= 0, got {self.runs} and {self.warmup}")
        if any(not 0.0 < end <= 1.0 for end in self.control_ends) or not self.control_ends:
            raise BenchSettingsError(f"--control-end values must be in (0, 1], got {list(self.control_ends)}")
        if any(name not in INSTANTID_SPEEDUPS for name in self.compare_without):
            raise BenchSettingsError(f"--compare-without takes some of {', '.join(INSTANTID_SPEEDUPS)}, "
                                     f"got {list(self.compare_without)}")
        if self.threads is not None and self.threads < 1:
            raise BenchSettingsError(f"--threads must be at least 1, got {self.threads}")
        if self.face_backend not in FACE_BACKENDS:
            raise BenchSettingsError(f"--face-backend must be one of {', '.join(FACE_BACKENDS)}, got {self.face_backend!r}")
        if not self.random_weights and self.arch != "sdxl":
            raise BenchSettingsError("real weights are SDXL: use --arch sdxl, or --random-weights for --arch tiny")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (value < 64 or value % 8):
                raise BenchSettingsError(f"--{name} must be a multiple of 8 and at least 64, got {value}")

    @property
    def size(self) -> str:
        """The random_sdxl architecture size."""
        return ARCHES[self.arch]

    @property
    def resolved_width(self) -> int:
        return self.width or DEFAULT_RESOLUTION[self.arch]

    @property
    def resolved_height(self) -> int:
        return self.height or DEFAULT_RESOLUTION[self.arch]

    @property
    def resolved_steps(self) -> int:
        return self.steps or DEFAULT_STEPS[self.arch]

    @property
    def torch_device(self) -> torch.device:
        import torch

        if self.device != "auto":
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        if self.dtype == "auto":
            # fp16 matmuls are slow on most CPUs; bfloat16 is the fast half type there (if supported)
            return torch.float16 if self.torch_device.type == "cuda" else torch.float32
        return getattr(torch, self.dtype)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(width=self.resolved_width, height=self.resolved_height, steps=self.resolved_steps,
                   dtype=str(self.torch_dtype).removeprefix("torch."), device=str(self.torch_device))
        return out
