"""InstantID on FLUX (InfiniteYou-FLUX v1.0's recipe): the stock `FluxControlNetPipeline` plus a mixin.

The stock pipeline keeps doing everything it does (text encoding, the control image's VAE latent, the
control window, distilled guidance, true CFG, LoRA, offload, schedulers). What InfiniteYou adds lives in
declared components (models/flux_identitynet.py):
- the ControlNet is a `FluxIdentityNetModel`: a plain `FluxControlNetModel` handed to the pipeline (the
  released `InfuseNetModel/`) becomes one when the pipeline registers it (same parameters, no copy); it
  sees the face tokens instead of the text, feeds its guidance embedding 1.0, and skips idle steps;
- the DiT is a `FluxIdentityTransformer2DModel` (the same weights), whose true-CFG negative pass gets no
  IdentityNet residuals, as in InfiniteYou;
- `load_ip_adapter_instantid` loads InfiniteYou's `image_proj_model.bin` as diffusers' IP-Adapter-Plus
  projection, sizes read from the weights (models/flux_adapter.py).
The mixin's `__call__` validates, turns the face embedding into tokens, opens the call's face scope and
calls the stock `__call__`. No control image means InfiniteYou's "no keypoints": a black image.
"""

from __future__ import annotations

import inspect
import logging

import numpy as np
import torch
from diffusers import FluxControlNetModel, FluxControlNetPipeline, FluxTransformer2DModel
from PIL import Image

from ..checks import check_finite
from ..errors import CheckpointError, UsageError
from ..models.face_paths import FLUX, check_embedding_path
from ..models.flux_adapter import build_face_projection, load_face_adapter_parts
from ..models.flux_face_adapter import has_face_adapter, install_face_adapter, remove_face_adapter
from ..params import FAMILY_SIZE_MULTIPLE
from ..models.flux_identitynet import (
    INFUSENET_GUIDANCE,
    FluxFaceConditioning,
    FluxIdentityNetModel,
    FluxIdentityTransformer2DModel,
    flux_face_conditioning,
)
from .call_checks import check_call, check_embedding, check_knob
from .instantid import InstantIDMixin, call_lock
from .output_check import checked_output
from .sizing import default_output_size

logger = logging.getLogger(__name__)

# InfiniteYou's output size when neither a size nor a control image gives one (width x height).
DEFAULT_WIDTH, DEFAULT_HEIGHT = 864, 1152
FLUX_SIZE_MULTIPLE = FAMILY_SIZE_MULTIPLE["flux"]


class FluxInstantIDMixin:
    # Name of the stock __call__ argument holding the ControlNet condition image.
    control_image_argument: str = "control_image"

    # ---- the components as InstantID declares them

    def register_modules(self, **kwargs) -> None:
        declared = {}
        if kwargs.get("controlnet") is not None:
            kwargs["controlnet"] = self.flux_identitynet(kwargs["controlnet"])
            declared["controlnet"] = ("diffusers", FluxControlNetModel.__name__)
        if kwargs.get("transformer") is not None:
            kwargs["transformer"] = FluxIdentityTransformer2DModel.sharing(kwargs["transformer"])
            declared["transformer"] = ("diffusers", FluxTransformer2DModel.__name__)
        super().register_modules(**kwargs)
        if declared:
            # A saved pipeline names them as what they are on disk, so any diffusers install loads it.
            self.register_to_config(**declared)

    @staticmethod
    def flux_identitynet(controlnet) -> FluxIdentityNetModel:
        if not isinstance(controlnet, FluxControlNetModel):
            raise UsageError(f"the FLUX InstantID pipeline takes one FluxControlNetModel (InfiniteYou's InfuseNet) as "
                             f"its controlnet, got a {type(controlnet).__name__}")
        return FluxIdentityNetModel.sharing(controlnet)

    @classmethod
    def from_pipe(cls, pipeline, **kwargs):
        # diffusers' from_pipe carries a model over only if its exact class is in the new pipeline's type
        # hints; the declared models are subclasses, so they are passed on explicitly (shared, no copy).
        for name in ("controlnet", "transformer"):
            if name not in kwargs and getattr(pipeline, name, None) is not None:
                kwargs[name] = getattr(pipeline, name)
        return super().from_pipe(pipeline, **kwargs)

    @property
    def identitynet(self) -> FluxIdentityNetModel:
        return self.controlnet

    @property
    def skip_idle_steps(self) -> bool:
        """Don't run IdentityNet at steps where the control window gives it weight 0 (bit-identical output)."""
        return bool(self.identitynet.skip_idle_steps)

    @skip_idle_steps.setter
    def skip_idle_steps(self, value: bool) -> None:
        self.identitynet.skip_idle_steps = bool(value)

    # ---- loading: the released name

    def load_ip_adapter_instantid(self, model_ckpt, image_emb_dim: int = 512, num_tokens: int = 8) -> None:
        """Load InfiniteYou's face projection (`image_proj_model.bin`, a .safetensors variant, or its dict).

        `image_emb_dim` and `num_tokens` are accepted for symmetry with the SDXL pipeline; the real values
        are read from the checkpoint's shapes. The FLUX DiT has no adapter branch, so there is no scale.
        """
        parts = load_face_adapter_parts(model_ckpt)
        projection = build_face_projection(parts["image_proj"], self.identitynet.config.joint_attention_dim,
                                           dtype=self.identitynet.dtype)
        found = (projection.proj_in.in_features, projection.latents.shape[1])
        if (image_emb_dim, num_tokens) != found:
            logger.info("face projection has %d-d input and %d tokens (read from its weights; arguments ignored)", *found)
        self._face_projection = projection
        # The optional adapter branch inside the DiT (instantid train --adapter_branch); InfiniteYou's files have none.
        if "ip_adapter" in parts:
            install_face_adapter(self.transformer, found[1], parts["ip_adapter"])
        elif has_face_adapter(self.transformer):
            remove_face_adapter(self.transformer)

    def unload_ip_adapter_instantid(self) -> None:
        self._face_projection = None
        if has_face_adapter(self.transformer):
            remove_face_adapter(self.transformer)

    @property
    def face_projection(self) -> torch.nn.Module:
        """The Resampler turning a face embedding into IdentityNet's face tokens."""
        projection = getattr(self, "_face_projection", None)
        if projection is None:
            raise CheckpointError("no face projection loaded: call pipe.load_ip_adapter_instantid("
                                  "'image_proj_model.bin') first")
        return projection

    @property
    def face_embedding_dim(self) -> int:
        return int(self.face_projection.proj_in.in_features)

    # ---- the call

    def face_embedding_tensor(self, image_embeds) -> torch.Tensor:
        """Validate a face embedding ([E], [1, E] or [n, E], unit-norm ArcFace) -> float32 tensor [1, n, E]."""
        dim = self.face_embedding_dim
        emb = torch.as_tensor(check_embedding(image_embeds, dim).astype(np.float32, copy=False))
        check_embedding_path(emb.numpy(), FLUX)
        return emb.reshape(1, -1, dim)

    def face_tokens(self, image_embeds) -> torch.Tensor:
        """The face embedding through the Resampler: [1, tokens, joint_attention_dim], float32 inputs as loaded."""
        projection = self.face_projection.to(self._execution_device)
        weight = next(projection.parameters())
        embedding = self.face_embedding_tensor(image_embeds) if image_embeds is not None \
            else torch.zeros(1, 1, self.face_embedding_dim)  # None: no face (the adapter branch's negative)
        embedding = embedding.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            return projection(embedding)

    def __call__(self, *args, image_embeds=None, identitynet_guidance: float = INFUSENET_GUIDANCE,
                 max_output_pixels: int | None = None, **kwargs):
        """The stock pipeline's call, plus `image_embeds` (the unit-norm ArcFace face embedding, required) and
        `identitynet_guidance` (the value IdentityNet's guidance embedding gets: InfiniteYou's 1.0).
        `control_image` is the keypoint image (draw_kps); None gives InfiniteYou's black "no keypoints" image.
        `max_output_pixels` raises (or lowers) the output pixel cap for this call. An output with NaN pixels
        raises GenerationError. See the stock `FluxControlNetPipeline` for the rest."""
        check_call(image_embeds, None, kwargs)
        if kwargs.get("true_cfg_scale") is not None:
            check_knob("true_cfg_scale", kwargs["true_cfg_scale"])
        if kwargs.get("ip_adapter_image_embeds") is not None or kwargs.get("ip_adapter_image") is not None:
            raise UsageError("pass the face as image_embeds; the FLUX DiT has no IP-Adapter branch")
        if not isinstance(self.controlnet, FluxIdentityNetModel) or \
                not isinstance(self.transformer, FluxIdentityTransformer2DModel):
            raise UsageError("the pipeline's controlnet/transformer were assigned directly; pass them when building "
                             "the pipeline (or through pipe.register_modules(...)) so they are declared")
        check_finite(identitynet_guidance, "identitynet_guidance")
        for name in ("width", "height"):
            value = kwargs.get(name)
            if value is not None and value % FLUX_SIZE_MULTIPLE:
                raise UsageError(f"{name} must be a multiple of {FLUX_SIZE_MULTIPLE} pixels for FLUX, got {value!r}")
        stock_call = super().__call__
        signature = inspect.signature(stock_call)
        call = signature.bind_partial(*args, **kwargs).arguments

        def arg(name):
            return call.get(name, signature.parameters[name].default)

        self._fill_output_size(call)
        rows = self._prompt_batch_size(arg("prompt"), arg("prompt_embeds")) * (arg("num_images_per_prompt") or 1)
        self._check_output_size(call, rows, max_output_pixels)
        if call.get("control_image") is None:
            call["control_image"] = Image.new("RGB", (call["width"], call["height"]))  # InfiniteYou's "no keypoints"
        tokens = self.face_tokens(image_embeds)
        # The adapter branch's negative (true-CFG) pass sees no face: the Resampler's tokens of a zero embedding.
        no_face = self.face_tokens(None) if has_face_adapter(self.transformer) else None
        to_pil = call.get("output_type", "pil") == "pil"
        if to_pil:  # PIL images are made from the float output, so NaN is seen, not saved black
            call["output_type"] = "np"
        # One call at a time per set of weights (the stock call keeps its state on the pipeline and scheduler;
        # instantid.call_lock); the face inputs are this call's context, never module state.
        with call_lock(self.transformer), flux_face_conditioning(
                FluxFaceConditioning(tokens, identitynet_guidance, adapter_negative=no_face)):
            output = stock_call(**call)
        if call.get("output_type") == "latent":
            return output
        return checked_output(output, to_pil=to_pil)

    # ---- helpers

    _prompt_batch_size = staticmethod(InstantIDMixin._prompt_batch_size)  # the same rule as the UNet pipelines'

    def _fill_output_size(self, call: dict) -> None:
        """Width/height: as given, else the control image's size (capped, multiples of 16), else InfiniteYou's."""
        if call.get("width") is not None and call.get("height") is not None:
            return
        image = call.get(self.control_image_argument)
        if isinstance(image, (list, tuple)):
            image = image[0] if image else None
        if isinstance(image, Image.Image):
            size = image.size
        elif isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim >= 3:
            size = (image.shape[-2], image.shape[-3]) if isinstance(image, np.ndarray) else (image.shape[-1], image.shape[-2])
        else:
            size = None
        width, height = default_output_size(size, multiple=FLUX_SIZE_MULTIPLE) if size else (DEFAULT_WIDTH, DEFAULT_HEIGHT)
        call["width"] = call.get("width") or width
        call["height"] = call.get("height") or height

    def _check_output_size(self, call: dict, images: int, max_output_pixels: int | None) -> None:
        from ..limits import check_output_size

        check_output_size(int(call["width"]), int(call["height"]), images, "flux", max_output_pixels)


class FluxInstantIDPipeline(FluxInstantIDMixin, FluxControlNetPipeline):
    """InstantID on FLUX, loading InfiniteYou-FLUX v1.0's released weights.

    >>> pipe = FluxInstantIDPipeline.from_pretrained(base, controlnet=FluxControlNetModel.from_pretrained(".../InfuseNetModel"))
    >>> pipe.load_ip_adapter_instantid(".../image_proj_model.bin")
    >>> image = pipe(prompt, image_embeds=face.embedding, control_image=draw_kps(photo, face.kps)).images[0]
    """
