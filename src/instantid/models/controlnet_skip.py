"""A ControlNet that skips work which cannot change the image.

The stock pipelines multiply a ControlNet's residuals by `conditioning_scale`, which the control
window (`control_guidance_start/end`) sets to 0 outside it; they still run the network there. Zero
residuals added to the UNet leave it bit-identical, so at scale 0 `IdleSkippingControlNetModel`
returns zeros of the right shapes (read from its architecture) instead of running. It is a stock
`ControlNetModel` otherwise: same config, same weights, saved in the same format.

`compile()` compiles the network (diffusers' `ControlNetModel.forward`) and keeps that per-step decision
in Python: inside the graph it would specialise the graph on the scale's value and recompile whenever
the scale changes; the compiled network takes the scale as a tensor input instead, so it compiles once.
"""

from __future__ import annotations

import json

import torch
from diffusers import ControlNetModel
from diffusers.models.controlnets.controlnet import ControlNetOutput


def is_zero_scale(scale) -> bool:
    if isinstance(scale, (list, tuple)):
        return all(is_zero_scale(s) for s in scale)
    return float(scale) == 0.0


def residual_shapes(controlnet: ControlNetModel, sample_shape) -> tuple[list[tuple], tuple]:
    """The shapes of a ControlNet's down-block residuals and mid-block residual for a latent of `sample_shape`:
    one residual after conv_in, one per resnet, one per downsampler (a stride-2 conv halves, rounding up)."""
    batch, _, height, width = sample_shape
    convs = iter(controlnet.controlnet_down_blocks)
    down = [(batch, next(convs).out_channels, height, width)]
    for block in controlnet.down_blocks:
        for _ in block.resnets:
            down.append((batch, next(convs).out_channels, height, width))
        if getattr(block, "downsamplers", None):
            height, width = (height + 1) // 2, (width + 1) // 2
            down.append((batch, next(convs).out_channels, height, width))
    return down, (batch, controlnet.controlnet_mid_block.out_channels, height, width)


class IdleSkippingControlNetModel(ControlNetModel):
    """A `ControlNetModel` that returns zero residuals without running when its scale is 0."""

    skip_idle_steps: bool = True
    _compiled_network = None  # set by compile()

    @classmethod
    def sharing(cls, controlnet: ControlNetModel):
        """`controlnet` as this class, sharing its parameters (no copy) and attention processors."""
        if isinstance(controlnet, cls):
            return controlnet
        with torch.device("meta"):
            new = cls.from_config(controlnet.config)
        new.load_state_dict(controlnet.state_dict(keep_vars=True), strict=True, assign=True)
        new.set_attn_processor(dict(controlnet.attn_processors))
        new.train(controlnet.training)
        return new

    def compile(self, *args, **kwargs) -> None:
        """torch.compile the network, not the per-step decisions around it (see the module docstring)."""
        self._compiled_network = torch.compile(super().forward, *args, **kwargs)

    def zero_residuals(self, sample: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Zeros shaped, typed and placed as a run's residuals (a list, as ControlNetModel returns them)."""
        dtype = self.controlnet_mid_block.weight.dtype
        down, mid = residual_shapes(self, sample.shape)
        return [sample.new_zeros(shape, dtype=dtype) for shape in down], sample.new_zeros(mid, dtype=dtype)

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale=1.0,
                class_labels=None, timestep_cond=None, attention_mask=None, added_cond_kwargs=None,
                cross_attention_kwargs=None, guess_mode: bool = False, return_dict: bool = True):
        if self.skip_idle_steps and is_zero_scale(conditioning_scale):
            down, mid = self.zero_residuals(sample)
            return ControlNetOutput(down_block_res_samples=down, mid_block_res_sample=mid) if return_dict else (down, mid)
        network = super().forward
        if self._compiled_network is not None:
            network = self._compiled_network
            if isinstance(conditioning_scale, (int, float)):  # a graph input, not a constant to specialise on
                conditioning_scale = torch.tensor(float(conditioning_scale), dtype=torch.float32, device=sample.device)
        return network(sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale,
                       class_labels=class_labels, timestep_cond=timestep_cond, attention_mask=attention_mask,
                       added_cond_kwargs=added_cond_kwargs, cross_attention_kwargs=cross_attention_kwargs,
                       guess_mode=guess_mode, return_dict=return_dict)

    def to_json_string(self) -> str:
        # Saved as the released format: a ControlNetModel config any diffusers install loads.
        config = json.loads(super().to_json_string())
        config["_class_name"] = ControlNetModel.__name__
        return json.dumps(config, indent=2, sort_keys=True) + "\n"
