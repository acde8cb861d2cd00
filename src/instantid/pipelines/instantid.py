"""What InstantID adds to a stock diffusers ControlNet pipeline, as a mixin.

The stock pipeline keeps doing everything it does (CFG, control windows, multi-ControlNet, LoRA,
offload, schedulers). This mixin adds three things around its `__call__`:
1. the face embedding goes in as the IP-Adapter image embedding, so diffusers' own Resampler
   (IP-Adapter-Plus projection) and decoupled cross-attention processors inject the face tokens;
   the CFG negative is the embedding of zeros, as in the released code (or of noise: negative_noise.py);
2. IdentityNet (the ControlNet at `identitynet_index`) cross-attends to those face tokens;
3. `ip_adapter_scale` applies to one call, and the output size is capped for large condition images.
"""

from __future__ import annotations

import inspect
import logging
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image

from ..errors import CheckpointError, EmbeddingError
from ..models.adapter import check_adapter_fits_unet, load_adapter_state_dict
from ..models.call_cache import constant_input_modules, constant_inputs_computed_once
from ..models.controlnet_skip import skip_idle_controlnets
from ..models.identitynet import identitynet_face_tokens
from .call_checks import check_call
from .face_region import regional_conditioning
from .negative_noise import negative_face_embedding
from .sizing import default_output_size

logger = logging.getLogger(__name__)


class InstantIDMixin:
    # The ControlNet that is IdentityNet when the pipeline holds several (MultiControlNetModel).
    identitynet_index: int = 0
    # Name of the stock __call__ argument holding the ControlNet condition image(s).
    control_image_argument: str = "image"
    # Don't run a ControlNet at steps where its control window gives it weight 0 (bit-identical output).
    skip_zero_scale_controlnets: bool = True
    # Compute face tokens and cross-attention keys/values once per call, not at every step (bit-identical).
    compute_constant_inputs_once: bool = True

    # ---- loading: the released name, plus the load / set-scale / unload trio diffusers users know

    def load_ip_adapter_instantid(self, model_ckpt, image_emb_dim: int = 512, num_tokens: int = 16,
                                  scale: float = 0.5) -> None:
        """Load the face adapter (`ip-adapter.bin`, its safetensors variant, or a state dict).

        `image_emb_dim` and `num_tokens` are accepted for compatibility with the released API; the real
        values are read from the checkpoint's shapes. `scale` is the default adapter strength.
        """
        state_dict = model_ckpt if isinstance(model_ckpt, dict) else load_adapter_state_dict(model_ckpt)
        shape = check_adapter_fits_unet(state_dict, self.unet)
        if (image_emb_dim, num_tokens) != (shape.embedding_dim, shape.num_tokens):
            logger.info("adapter has %d-d input and %d tokens (read from its weights; arguments ignored)",
                        shape.embedding_dim, shape.num_tokens)
        if getattr(self.unet, "encoder_hid_proj", None) is not None:
            self.unload_ip_adapter()  # one face adapter at a time
        self.load_ip_adapter(state_dict, subfolder=None, weight_name=None, image_encoder_folder=None)
        self.set_ip_adapter_scale(scale)

    def unload_ip_adapter_instantid(self) -> None:
        self.unload_ip_adapter()

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
        """Validate a raw face embedding ([E], [1, E] or [n, E]) -> float32 tensor [1, n, E]."""
        dim = self.face_embedding_dim
        try:
            emb = torch.as_tensor(np.asarray(image_embeds, dtype=np.float32) if not torch.is_tensor(image_embeds)
                                  else image_embeds.detach().float().cpu())
        except (TypeError, ValueError) as err:
            raise EmbeddingError(f"image_embeds must be an array of numbers, got {type(image_embeds).__name__}") from err
        if emb.numel() == 0 or emb.shape[-1] != dim or emb.numel() % dim:
            raise EmbeddingError(
                f"image_embeds has shape {tuple(emb.shape)}, but the loaded adapter takes {dim}-d face embeddings "
                f"(antelopev2 gives 512, dlib 128): use the face backend the adapter was trained with"
            )
        if not torch.isfinite(emb).all():
            raise EmbeddingError("image_embeds contains NaN or infinite values; recompute the face embedding")
        return emb.reshape(1, -1, dim)

    def _stock_signature(self) -> inspect.Signature:
        """The signature of the stock pipeline's __call__: the first one after this mixin in the MRO."""
        mro = type(self).__mro__
        for cls in mro[mro.index(InstantIDMixin) + 1:]:
            if "__call__" in vars(cls):
                return inspect.signature(vars(cls)["__call__"])
        raise TypeError(f"{type(self).__name__} has no stock pipeline to extend")

    def __call__(self, *args, image_embeds=None, ip_adapter_scale: float | None = None,
                 face_region_mask=None, identity_regions=None, negative_face_noise: float = 0.0, **kwargs):
        """The stock pipeline's call, plus `image_embeds` (the raw face embedding, required) and
        `ip_adapter_scale` (adapter strength for this call only). See the stock pipeline's docs for the rest.

        `face_region_mask` (a box x1,y1,x2,y2 in output pixels, or a mask) confines the face to that region
        ("enhance face region"); `identity_regions` (a list of face_region.IdentityRegion) puts several
        identities in their own regions. See face_region.py. `negative_face_noise` (default 0 = released)
        puts noise in the CFG negative face embedding against burned faces: see negative_noise.py."""
        check_call(image_embeds, ip_adapter_scale, {**kwargs, "negative_face_noise": negative_face_noise})
        if image_embeds is None:
            raise EmbeddingError("image_embeds (the face embedding) is required; get it from instantid.face")
        if kwargs.get("ip_adapter_image_embeds") is not None or kwargs.get("ip_adapter_image") is not None:
            raise ValueError("pass the face as image_embeds, not ip_adapter_image / ip_adapter_image_embeds")
        signature = self._stock_signature()
        call = signature.bind_partial(self, *args, **kwargs).arguments
        call.pop("self")

        def arg(name):
            return call.get(name, signature.parameters[name].default)

        proj = self.face_projection
        weight = next(proj.parameters())
        embedding = self.face_embedding_tensor(image_embeds).to(weight.dtype)
        self._guidance_scale = arg("guidance_scale")  # lets the stock do_classifier_free_guidance decide
        batch = self._prompt_batch_size(arg("prompt"), arg("prompt_embeds"))
        positive = embedding.expand(batch, -1, -1)[:, None]  # [batch, 1 image, n, E]
        # CFG negative: Resampler(zeros) as released, or of noise (negative_noise.py; draws nothing at 0)
        negative = negative_face_embedding(positive, negative_face_noise, arg("generator"))
        call["ip_adapter_image_embeds"] = [torch.cat([negative, positive]) if self.do_classifier_free_guidance
                                           else positive]
        self._fill_output_size(call)

        with torch.no_grad():
            tokens = proj(torch.cat([negative[:1, 0], positive[:1, 0]]).to(weight.device))
        neg_tokens, pos_tokens = tokens[:1], tokens[1:]

        token_batches: dict[tuple, torch.Tensor] = {}  # the same tensor at every step (see call_cache.py)

        def tokens_for_batch(size: int, controlnet_kwargs: dict) -> torch.Tensor:
            # Same batch layout as the text states: [negatives, positives] under CFG unless guess mode.
            cfg = self.do_classifier_free_guidance and not controlnet_kwargs.get("guess_mode", False)
            if (size, cfg) not in token_batches:
                half = size // 2
                token_batches[size, cfg] = (torch.cat([neg_tokens.expand(half, -1, -1),
                                                       pos_tokens.expand(size - half, -1, -1)])
                                            if cfg else pos_tokens.expand(size, -1, -1))
            return token_batches[size, cfg]

        with (self._adapter_scale(ip_adapter_scale),
              identitynet_face_tokens(self.identitynet, tokens_for_batch),
              skip_idle_controlnets(self.controlnets if self.skip_zero_scale_controlnets else []),
              regional_conditioning(self, call, face_region_mask, identity_regions),
              constant_inputs_computed_once(constant_input_modules(self.unet, self.controlnets)
                                            if self.compute_constant_inputs_once else [])):
            return super().__call__(**call)

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

    @contextmanager
    def _adapter_scale(self, scale: float | None):
        """Set the adapter scale for one call, then restore exactly what was there."""
        if scale is None:
            yield
            return
        processors = [p for p in self.unet.attn_processors.values() if hasattr(p, "to_k_ip")]
        saved = [list(p.scale) if isinstance(p.scale, list) else p.scale for p in processors]
        self.set_ip_adapter_scale(scale)
        try:
            yield
        finally:
            for processor, previous in zip(processors, saved):
                processor.scale = previous
