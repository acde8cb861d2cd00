"""The SDXL InstantID pipeline: the stock SDXL ControlNet pipeline plus InstantIDMixin."""

from diffusers import StableDiffusionXLControlNetPipeline

from .instantid import InstantIDMixin


class StableDiffusionXLInstantIDPipeline(InstantIDMixin, StableDiffusionXLControlNetPipeline):
    """Drop-in for the released `StableDiffusionXLInstantIDPipeline`.

    >>> pipe = StableDiffusionXLInstantIDPipeline.from_pretrained(base, controlnet=ControlNetModel.from_pretrained(dir))
    >>> pipe.load_ip_adapter_instantid("ip-adapter.bin")
    >>> image = pipe(prompt, image_embeds=face.embedding, image=draw_kps(photo, face.kps)).images[0]
    """
