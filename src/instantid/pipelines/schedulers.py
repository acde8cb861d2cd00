"""Schedulers selectable by name, all stock diffusers classes configured from the pipeline's own."""

from __future__ import annotations

# name -> (diffusers class name, extra config)
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpmpp_sde_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
}


def scheduler_from(config, name: str):
    """A new scheduler of the named kind, from a scheduler `config` (the model's noise schedule settings).
    Built from the base model's own config, the result depends on `name` alone, not on earlier switches."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler '{name}'; choose one of: {', '.join(SCHEDULERS)}")
    class_name, extra = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(config, **extra)


def set_scheduler(pipe, name: str) -> None:
    """Replace `pipe.scheduler` by the named one, keeping the model's noise schedule settings."""
    pipe.scheduler = scheduler_from(pipe.scheduler.config, name)
