"""instantid: identity-preserving image generation from one face photo (InstantID).

Heavy libraries (torch, diffusers, insightface, dlib) load on first use of the name that needs them.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "StableDiffusionXLInstantIDPipeline": "instantid.pipelines.sdxl",
    "StableDiffusionInstantIDPipeline": "instantid.pipelines.sd15",
    "StableDiffusionXLInstantIDImg2ImgPipeline": "instantid.pipelines.img2img",
    "StableDiffusionXLInstantIDInpaintPipeline": "instantid.pipelines.inpaint",
    "StableDiffusionInstantIDImg2ImgPipeline": "instantid.pipelines.img2img",
    "StableDiffusionInstantIDInpaintPipeline": "instantid.pipelines.inpaint",
    "InstantIDMixin": "instantid.pipelines.instantid",
    "FluxInstantIDPipeline": "instantid.pipelines.flux",
    "FluxInstantIDMixin": "instantid.pipelines.flux",
    "FluxIdentityNetModel": "instantid.models.flux_identitynet",
    "IdentityNetModel": "instantid.models.identitynet",
    "IdleSkippingControlNetModel": "instantid.models.controlnet_skip",
    "IdentityRegion": "instantid.pipelines.face_region",
    "generate_multi_identity": "instantid.pipelines.multi_identity",
    "identities_from_photos": "instantid.pipelines.multi_identity",
    "swap_face": "instantid.pipelines.face_swap",
    "load_pipeline": "instantid.pipelines.loading",
    "LoadOptions": "instantid.pipelines.loading",
    "check_request": "instantid.pipelines.request",
    "generate_from_photos": "instantid.pipelines.from_photos",
    "face_condition": "instantid.pipelines.from_photos",
    "FaceCondition": "instantid.pipelines.from_photos",
    "GenerationResult": "instantid.pipelines.results",
    "ExtraControl": "instantid.pipelines.conditions",
    "draw_kps": "instantid.face.keypoints",
    "average_embeddings": "instantid.face.keypoints",
    "Face": "instantid.face.types",
    "get_face_analyzer": "instantid.face",
    "analyze_faces": "instantid.face",
    "load_image": "instantid.face",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'instantid' has no attribute '{name}'")
