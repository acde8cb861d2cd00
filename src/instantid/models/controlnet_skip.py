"""Skip ControlNet work that cannot change the image.

The stock pipelines multiply a ControlNet's residuals by `conditioning_scale`, which the control
window (`control_guidance_start/end`) sets to 0 outside it; they still run the network there. Zero
residuals added to the UNet leave it bit-identical, so at scale 0 we return zeros of the right shapes
instead of running it. Shapes come from the last real run at that input shape (the first call at a
new shape always runs).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch


def _is_zero(scale) -> bool:
    if isinstance(scale, (list, tuple)):
        return all(_is_zero(s) for s in scale)
    return float(scale) == 0.0


@contextmanager
def skip_idle_controlnets(controlnets: Iterable[torch.nn.Module]) -> Iterator[dict]:
    """While active, each ControlNetModel in `controlnets` returns zeros instead of running at scale 0.

    Yields a dict of counters {"ran": n, "skipped": n} for inspection.
    """
    counts = {"ran": 0, "skipped": 0}
    restored = []
    for net in controlnets:
        had_instance_forward = "forward" in net.__dict__
        previous = net.forward  # may be an accelerate offload wrapper: keep it in the chain
        shapes: dict[tuple, tuple] = {}

        def forward(*args, _previous=previous, _shapes=shapes, **kwargs):
            sample = args[0] if args else kwargs["sample"]
            key = (tuple(sample.shape), sample.device)
            if _is_zero(kwargs.get("conditioning_scale", 1.0)) and key in _shapes:
                counts["skipped"] += 1
                down_shapes, mid_shape, dtype = _shapes[key]
                down = tuple(sample.new_zeros(s, dtype=dtype) for s in down_shapes)
                mid = sample.new_zeros(mid_shape, dtype=dtype)
                if kwargs.get("return_dict", True):
                    from diffusers.models.controlnets.controlnet import ControlNetOutput

                    return ControlNetOutput(down_block_res_samples=down, mid_block_res_sample=mid)
                return down, mid
            counts["ran"] += 1
            out = _previous(*args, **kwargs)
            down, mid = (out.down_block_res_samples, out.mid_block_res_sample) if hasattr(out, "mid_block_res_sample") else out
            _shapes[key] = (tuple(d.shape for d in down), tuple(mid.shape), mid.dtype)
            return out

        net.forward = forward
        restored.append((net, had_instance_forward, previous))
    try:
        yield counts
    finally:
        for net, had_instance_forward, previous in restored:
            if had_instance_forward:
                net.forward = previous
            else:
                del net.forward
