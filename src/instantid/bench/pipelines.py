"""The compared pipelines, built on one shared set of modules (random or real weights)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .settings import BenchSettings
from ..pipelines.speed import apply_to_modules

logger = logging.getLogger(__name__)


@dataclass
class PretrainedComponents:
    """Real weights, shaped like random_sdxl.Components (what the bench reads from it)."""

    stock: object  # a StableDiffusionXLControlNetPipeline with IdentityNet, adapter not loaded
    adapter_state_dict: dict
    build_seconds: dict

    @property
    def unet(self):
        return self.stock.unet

    @property
    def controlnet(self):
        return self.stock.controlnet

    @property
    def vae(self):
        return self.stock.vae

    def sdxl_kwargs(self) -> dict:
        parts = {k: v for k, v in self.stock.components.items() if k in (
            "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet")}
        scheduler = type(self.stock.scheduler).from_config(self.stock.scheduler.config)
        return dict(parts, scheduler=scheduler, add_watermarker=False)

    def parameter_counts(self) -> dict[str, int]:
        counts = {name: sum(p.numel() for p in module.parameters()) for name, module in self.stock.components.items()
                  if isinstance(module, torch.nn.Module)}
        counts["adapter"] = sum(t.numel() for part in self.adapter_state_dict.values() for t in part.values())
        return counts


def build_components(settings: BenchSettings):
    """Random components of the chosen architecture, or the real weights (downloaded once)."""
    import time

    device, dtype = settings.torch_device, settings.torch_dtype
    if settings.random_weights:
        from ..testing.random_sdxl import build_components as build_random

        return build_random(settings.size, device, dtype, seed=settings.seed)
    from diffusers import StableDiffusionXLControlNetPipeline

    from ..pipelines import hub
    from ..models.adapter import load_adapter_state_dict
    from ..pipelines.loading import load_base, load_identitynet, resolve_adapter

    start = time.perf_counter()
    adapter_path = resolve_adapter(settings.adapter or hub.RELEASED_REPO)
    controlnet = load_identitynet(settings.identitynet or hub.RELEASED_REPO, dtype)
    stock = load_base(StableDiffusionXLControlNetPipeline, settings.base or hub.DEFAULT_BASE, controlnet, dtype)
    stock.to(device)
    return PretrainedComponents(stock, load_adapter_state_dict(adapter_path),
                                {"load": round(time.perf_counter() - start, 2)})


def build_pipelines(components, settings: BenchSettings) -> dict:
    """name -> pipeline, all on `components`' modules. The face adapter is loaded last (it changes
    the shared UNet; stock runs take it out again, see adapter_switch.py); then the speed options."""
    from diffusers import StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline

    from ..pipelines.sdxl import StableDiffusionXLInstantIDPipeline

    pipes = {}
    if "sdxl" in settings.pipelines:
        pipes["sdxl"] = StableDiffusionXLPipeline(**components.sdxl_kwargs())
    if "controlnet" in settings.pipelines:
        pipes["controlnet"] = StableDiffusionXLControlNetPipeline(**components.sdxl_kwargs(),
                                                                  controlnet=components.controlnet)
    if "instantid" in settings.pipelines:
        pipe = StableDiffusionXLInstantIDPipeline(**components.sdxl_kwargs(), controlnet=components.controlnet)
        pipe.load_ip_adapter_instantid(components.adapter_state_dict)
        pipes["instantid"] = pipe
    # InstantID's IdentityNet shares the stock ControlNet's parameters but is its own module: both get the options.
    controlnets = [components.controlnet] + ([pipes["instantid"].controlnet] if "instantid" in pipes else [])
    apply_to_modules(settings.options, unet=components.unet, controlnet=controlnets, vae=components.vae)
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    return pipes
