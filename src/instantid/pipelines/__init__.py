"""Pipelines: the InstantID mixin on stock diffusers ControlNet pipelines, loading, sizing."""
