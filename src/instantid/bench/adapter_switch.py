"""Run stock pipelines on a UNet that holds the face adapter, by taking the adapter out for a while.

The compared pipelines share one set of modules (two full-size UNets would not fit), and loading
the face adapter changes the UNet: cross-attention processors with face keys/values, and the
Resampler as `encoder_hid_proj`. Inside `face_adapter_detached(unet)` the UNet is exactly the
stock one again (what `unload_ip_adapter` leaves), and on exit the same adapter objects are put
back, so nothing is reloaded and runs can alternate A B A B.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from diffusers.models.attention_processor import (
    AttnProcessor,
    AttnProcessor2_0,
    IPAdapterAttnProcessor,
    IPAdapterAttnProcessor2_0,
)

ADAPTER_PROJECTION_TYPE = "ip_image_proj"


def _unet_processors(unet) -> dict:
    """The UNet's own attention processors (not those inside the Resampler)."""
    return {name: proc for name, proc in unet.attn_processors.items() if not name.startswith("encoder_hid_proj.")}


def _plain_processor(processor):
    """The stock processor a face-adapter processor stands in for (same attention kernel)."""
    if isinstance(processor, IPAdapterAttnProcessor2_0):
        return AttnProcessor2_0()
    if isinstance(processor, IPAdapterAttnProcessor):
        return AttnProcessor()
    return processor


@contextmanager
def face_adapter_detached(unet) -> Iterator[None]:
    """While active, `unet` has no face adapter (no-op when none is loaded)."""
    projection = getattr(unet, "encoder_hid_proj", None)
    if projection is None or unet.config.encoder_hid_dim_type != ADAPTER_PROJECTION_TYPE:
        yield
        return
    saved = _unet_processors(unet)
    # Projection first: attn_processors lists the Resampler's processors while it is attached. Without a
    # projection the UNet does no IP-Adapter work whatever its config says, so the config stays as it is.
    unet.encoder_hid_proj = None
    unet.set_attn_processor({name: _plain_processor(proc) for name, proc in saved.items()})
    try:
        yield
    finally:
        unet.set_attn_processor(saved)
        unet.encoder_hid_proj = projection
