"""What a training run trains and with what: the components every family's training step reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TrainingComponents:
    family: str  # SDXL or SD15 (FLUX: training/flux.py's FluxTrainingComponents)
    pipe: object  # the InstantID inference pipeline holding every module below
    model: torch.nn.Module  # model.InstantIDTrainingModel (flux.FluxInstantIDTrainingModel)
    noise_scheduler: object
    weight_dtype: torch.dtype  # of the frozen weights

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def identitynet(self):
        return self.pipe.controlnet

    @property
    def vae(self):
        return self.pipe.vae

    def text_encoders(self) -> list:
        return [m for m in (self.pipe.text_encoder, getattr(self.pipe, "text_encoder_2", None)) if m is not None]
