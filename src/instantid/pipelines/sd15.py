"""The SD1.5-family InstantID pipeline: the stock SD ControlNet pipeline plus InstantIDMixin.

Needs InstantID weights trained for SD1.5 (768-d face tokens); `instantid train` makes them.
"""

from diffusers import StableDiffusionControlNetPipeline

from .instantid import InstantIDMixin


class StableDiffusionInstantIDPipeline(InstantIDMixin, StableDiffusionControlNetPipeline):
    """SD1.5 counterpart of StableDiffusionXLInstantIDPipeline (same arguments, no SDXL-only ones)."""
