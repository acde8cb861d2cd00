"""What InstantID adds to a stock diffusers ControlNet pipeline, as a mixin.

The stock pipeline keeps doing everything it does (CFG, control windows, multi-ControlNet, LoRA,
offload, schedulers). InstantID's behaviour lives in declared components:
- the ControlNet at `identitynet_index` is an `IdentityNetModel` (models/identitynet.py), which
  cross-attends to the face tokens; the others are `IdleSkippingControlNetModel`s. A plain
  `ControlNetModel` handed to the pipeline becomes one when the pipeline registers it (same parameters,
  no copy), so the released drop-in usage works unchanged;
- `load_ip_adapter_instantid` loads the face adapter with diffusers' IP-Adapter loader (the Resampler
  as `unet.encoder_hid_proj`, decoupled cross-attention processors via `set_attn_processor`) and
  declares the call-constant modules (models/call_constants.py).
The mixin's `__call__` only validates and prepares inputs, then calls the stock `__call__`:
1. the face embedding goes in as the IP-Adapter image embedding; the CFG negative is the embedding of
   zeros, as in the released code (or of noise: negative_noise.py);
2. the call's face tokens (and region inputs, see face_region.py) go to IdentityNet for this call;
3. `ip_adapter_scale` applies to one call (models/adapter_scales.py: the shared processors are never
   changed), and the output size is capped for large condition images;
4. every call's output size is checked against the model family's pixel cap (instantid.limits), and an
   output holding NaN is a GenerationError, never a black image (output_check.py): every library
   entry (generate_from_photos, swap, multi-identity, the face-detail pass) calls a pipeline, so they all
   share these two checks.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from contextlib import ExitStack

import numpy as np
import torch
from PIL import Image

from ..errors import CheckpointError, UsageError
from ..models.adapter import check_adapter_fits_unet, check_adapter_layout, load_adapter_state_dict
from ..models.adapter_scales import adapter_scale, install_call_scaled_processors
from ..models.call_constants import (
    call_constant_reuse,
    install_call_constant_modules,
    remove_call_constant_modules,
)
from ..models.controlnet_skip import IdleSkippingControlNetModel
from ..models.identitynet import FaceTokens, IdentityNetModel
from .call_checks import check_call, check_embedding
from .face_region import regional_conditioning
from .output_check import checked_output
from .negative_noise import negative_face_embedding
from .sizing import default_output_size

logger = logging.getLogger(__name__)

# The stock pipelines keep a call's state on shared objects (the scheduler's step index and history, the
# pipeline's _guidance_scale, _cross_attention_kwargs, ...): two calls at once on the same weights would mix
# them. Every pipeline sharing a UNet (from_pipe variants included) takes that UNet's lock for the whole
# call; re-entrant, so a step callback may call the pipeline. InstantID's own per-call state (face tokens,
# regions, adapter scales, call constants) is in context variables, never on the modules.
_CALL_LOCKS: "weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_CALL_LOCKS_GUARD = threading.Lock()


def call_lock(unet: torch.nn.Module) -> threading.RLock:
    """The lock every InstantID pipeline call on `unet` holds (one call at a time per set of weights)."""
    with _CALL_LOCKS_GUARD:
        lock = _CALL_LOCKS.get(unet)
        if lock is None:
            lock = _CALL_LOCKS[unet] = threading.RLock()
        return lock


class InstantIDMixin:
    # The ControlNet that is IdentityNet when the pipeline holds several (MultiControlNetModel).
    identitynet_index: int = 0
    # Name of the stock __call__ argument holding the ControlNet condition image(s).
    control_image_argument: str = "image"
    # Compute face tokens and cross-attention keys/values once per call, not at every step (bit-identical).
    reuse_call_constants: bool = True

    # ---- the ControlNets as InstantID declares them

    def register_modules(self, **kwargs) -> None:
        if kwargs.get("controlnet") is None:
            super().register_modules(**kwargs)
            return
        kwargs["controlnet"] = self.instantid_controlnet(kwargs["controlnet"])
        super().register_modules(**kwargs)
        if isinstance(kwargs["controlnet"], IdleSkippingControlNetModel):
            # A saved pipeline names it as what it is on disk (a ControlNetModel config and weights), so
            # any diffusers install loads it; loading it into this pipeline declares it again.
            self.register_to_config(controlnet=("diffusers", "ControlNetModel"))

    @classmethod
    def instantid_controlnet(cls, controlnet):
        """IdentityNet at `identitynet_index`, idle-skipping ControlNets elsewhere; plain ControlNetModels
        are turned into those sharing their parameters (no copy)."""
        from diffusers import MultiControlNetModel

        def declared(net, index):
            wanted = IdentityNetModel if index == cls.identitynet_index else IdleSkippingControlNetModel
            net = wanted.sharing(net)
            install_call_constant_modules(net)
            return net

        if isinstance(controlnet, MultiControlNetModel):
            nets = [declared(net, index) for index, net in enumerate(controlnet.nets)]
            if all(a is b for a, b in zip(nets, controlnet.nets)):
                return controlnet
            return MultiControlNetModel(nets)
        return declared(controlnet, 0)

    @classmethod
    def from_pipe(cls, pipeline, **kwargs):
        # diffusers' from_pipe carries a model over only if its exact class is in the new pipeline's type
        # hints; the declared ControlNets are subclasses, so they are passed on explicitly (shared, no copy).
        if "controlnet" not in kwargs and getattr(pipeline, "controlnet", None) is not None:
            kwargs["controlnet"] = pipeline.controlnet
        derived = super().from_pipe(pipeline, **kwargs)
        # the detail and swap passes run on derived pipelines: they keep the caller's progress-bar choice
        # (no bars in a pipe), which diffusers' from_pipe does not carry over
        if hasattr(pipeline, "_progress_bar_config"):
            derived.set_progress_bar_config(**pipeline._progress_bar_config)
        return derived

    @property
    def skip_idle_steps(self) -> bool:
        """Don't run a ControlNet at steps where its control window gives it weight 0 (bit-identical output)."""
        return all(getattr(net, "skip_idle_steps", False) for net in self.controlnets)

    @skip_idle_steps.setter
    def skip_idle_steps(self, value: bool) -> None:
        for net in self.controlnets:
            net.skip_idle_steps = bool(value)

    # ---- loading: the released name, plus the load / set-scale / unload trio diffusers users know

    def load_ip_adapter_instantid(self, model_ckpt, image_emb_dim: int = 512, num_tokens: int = 16,
                                  scale: float = 0.5) -> None:
        """Load the face adapter (`ip-adapter.bin`, its safetensors variant, or a state dict).

        `image_emb_dim` and `num_tokens` are accepted for compatibility with the released API; the real
        values are read from the checkpoint's shapes. `scale` is the default adapter strength.
        """
        if isinstance(model_ckpt, dict):
            check_adapter_layout(model_ckpt)  # a file's tensors are checked as it is read
        state_dict = model_ckpt if isinstance(model_ckpt, dict) else load_adapter_state_dict(model_ckpt)
        shape = check_adapter_fits_unet(state_dict, self.unet)
        if (image_emb_dim, num_tokens) != (shape.embedding_dim, shape.num_tokens):
            logger.info("adapter has %d-d input and %d tokens (read from its weights; arguments ignored)",
                        shape.embedding_dim, shape.num_tokens)
        if getattr(self.unet, "encoder_hid_proj", None) is not None:
            self.unload_ip_adapter()  # one face adapter at a time
        self.load_ip_adapter(state_dict, subfolder=None, weight_name=None, image_encoder_folder=None)
        install_call_scaled_processors(self.unet)  # before the call-constant layers: it re-declares the processors
        install_call_constant_modules(self.unet)
        self.set_ip_adapter_scale(scale)

    def unload_ip_adapter_instantid(self) -> None:
        """The UNet as before `load_ip_adapter_instantid`: diffusers' unload, and plain key/value projections."""
        self.unload_ip_adapter()
        remove_call_constant_modules(self.unet)

    @property
    def identitynet(self):
        return self.controlnets[self.identitynet_index]

    @property
    def controlnets(self) -> list:
        from diffusers import MultiControlNetModel

        return list(self.controlnet.nets) if isinstance(self.controlnet, MultiControlNetModel) else [self.controlnet]

    @property
    def face_projection(self) -> torch.nn.Module:
        """The Resampler turning a face embedding into face tokens (inside the UNet, as diffusers keeps it)."""
        proj = getattr(self.unet, "encoder_hid_proj", None)
        if proj is None:
            raise CheckpointError("no face adapter loaded: call pipe.load_ip_adapter_instantid('ip-adapter.bin') first")
        return proj.image_projection_layers[0]

    @property
    def face_embedding_dim(self) -> int:
        return int(self.face_projection.proj_in.in_features)

    # ---- the call

    def face_embedding_tensor(self, image_embeds) -> torch.Tensor:
        """Validate a raw face embedding ([E], [1, E] or [n, E]; call_checks.check_embedding) -> float32 [1, n, E]."""
        dim = self.face_embedding_dim
        emb = torch.as_tensor(check_embedding(image_embeds, dim).astype(np.float32, copy=False))
        from ..models.architectures import family_of_pipeline
        from ..models.face_paths import check_embedding_path

        check_embedding_path(emb.numpy(), family_of_pipeline(self))  # not FLUX's unit-norm ArcFace embedding
        return emb.reshape(1, -1, dim)

    def __call__(self, *args, image_embeds=None, ip_adapter_scale: float | None = None,
                 face_region_mask=None, identity_regions=None, negative_face_noise: float = 0.0,
                 max_output_pixels: int | None = None, **kwargs):
        """The stock pipeline's call, plus `image_embeds` (the raw face embedding, required) and
        `ip_adapter_scale` (adapter strength for this call only). See the stock pipeline's docs for the rest.

        `face_region_mask` (a box x1,y1,x2,y2 in output pixels, or a mask) confines the face to that region
        ("enhance face region"); `identity_regions` (a list of face_region.IdentityRegion) puts several
        identities in their own regions. See face_region.py. `negative_face_noise` (default 0 = released)
        puts noise in the CFG negative face embedding against burned faces: see negative_noise.py.
        `max_output_pixels` raises (or lowers) the output pixel cap for this call (default: $INSTANTID_MAX_OUTPUT_PIXELS,
        else the model family's cap in instantid.limits). An output with NaN pixels raises GenerationError."""
        check_call(image_embeds, ip_adapter_scale, {**kwargs, "negative_face_noise": negative_face_noise})
        if kwargs.get("ip_adapter_image_embeds") is not None or kwargs.get("ip_adapter_image") is not None:
            raise UsageError("pass the face as image_embeds, not ip_adapter_image / ip_adapter_image_embeds")
        if not hasattr(self.identitynet, "face_conditioning"):
            raise UsageError(f"the pipeline's ControlNet {self.identitynet_index} is a {type(self.identitynet).__name__}, "
                             "not IdentityNet: pass ControlNets when building the pipeline (or through "
                             "pipe.register_modules(controlnet=...)), not by assigning pipe.controlnet")
        with call_lock(self.unet):  # one call at a time per set of weights (see call_lock)
            return self._locked_call(args, image_embeds, ip_adapter_scale, face_region_mask, identity_regions,
                                     negative_face_noise, max_output_pixels, kwargs)

    def _locked_call(self, args, image_embeds, ip_adapter_scale, face_region_mask, identity_regions,
                     negative_face_noise, max_output_pixels, kwargs):
        stock_call = super().__call__
        signature = inspect.signature(stock_call)
        call = signature.bind_partial(*args, **kwargs).arguments

        def arg(name):
            return call.get(name, signature.parameters[name].default)

        self._fill_output_size(call)
        batch = self._prompt_batch_size(arg("prompt"), arg("prompt_embeds"))
        rows = batch * (arg("num_images_per_prompt") or 1)
        self._check_output_size(call, rows, max_output_pixels)
        proj = self.face_projection
        weight = next(proj.parameters())
        embedding = self.face_embedding_tensor(image_embeds).to(weight.dtype)
        cfg = self.uses_classifier_free_guidance(arg("guidance_scale"))
        positive = embedding.expand(batch, -1, -1)[:, None]  # [batch, 1 image, n, E]
        # CFG negative: Resampler(zeros) as released, or of noise (negative_noise.py; draws nothing at 0)
        negative = negative_face_embedding(positive, negative_face_noise, arg("generator"))
        call["ip_adapter_image_embeds"] = [torch.cat([negative, positive]) if cfg else positive]

        with torch.no_grad():
            tokens = proj(torch.cat([negative[:1, 0], positive[:1, 0]]).to(weight.device))
        face_tokens = FaceTokens.for_batch(tokens[:1], tokens[1:], rows, cfg)

        with ExitStack() as stack:
            stack.enter_context(adapter_scale(self.unet, ip_adapter_scale))
            regions = stack.enter_context(regional_conditioning(
                self, call, cfg=cfg, rows=rows, face_region_mask=face_region_mask, identity_regions=identity_regions))
            stack.enter_context(self.identitynet.face_conditioning(face_tokens, regions))
            if self.reuse_call_constants:
                stack.enter_context(call_constant_reuse())
            # PIL images are made from the float output (as diffusers makes them), so NaN is seen, not saved black.
            to_pil = call.get("output_type", "pil") == "pil" and call.get("padding_mask_crop") is None
            if to_pil:
                call["output_type"] = "np"
            output = stock_call(**call)
        if call.get("output_type") == "latent":
            return output
        return checked_output(output, to_pil=to_pil)

    def uses_classifier_free_guidance(self, guidance_scale: float) -> bool:
        """What the stock `do_classifier_free_guidance` will say for this guidance scale."""
        return guidance_scale > 1 and self.unet.config.time_cond_proj_dim is None

    # ---- helpers

    @staticmethod
    def _prompt_batch_size(prompt, prompt_embeds) -> int:
        if isinstance(prompt, (list, tuple)):
            return len(prompt)
        if prompt is None and prompt_embeds is not None:
            return int(prompt_embeds.shape[0])
        return 1

    def _fill_output_size(self, call: dict) -> None:
        """Default width/height from the IdentityNet condition image, capped (see sizing.py)."""
        if call.get("width") is not None and call.get("height") is not None:
            return
        image = call.get(self.control_image_argument)
        if isinstance(image, (list, tuple)):
            image = image[self.identitynet_index] if image else None
        if isinstance(image, (list, tuple)):
            image = image[0] if image else None
        if isinstance(image, Image.Image):
            size = image.size
        elif isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim >= 3:
            # numpy HWC / NHWC, torch CHW / NCHW, as the stock image processor reads them
            size = (image.shape[-2], image.shape[-3]) if isinstance(image, np.ndarray) else (image.shape[-1], image.shape[-2])
        else:
            return  # let the stock pipeline decide (and complain)
        width, height = default_output_size(size)
        call["width"] = call.get("width") or width
        call["height"] = call.get("height") or height

    def _check_output_size(self, call: dict, images: int, max_output_pixels: int | None) -> None:
        """The output pixel cap of this pipeline's model family (instantid.limits), before any step runs."""
        from ..limits import check_output_size
        from ..models.architectures import family_of_pipeline

        width, height = call.get("width"), call.get("height")
        if width and height:
            check_output_size(int(width), int(height), images, family_of_pipeline(self), max_output_pixels)
