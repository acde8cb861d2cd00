"""Timing and memory harness behind `instantid bench`.

settings.py (what to measure), memory.py (peak RSS / CUDA peaks), testing/stage_timer.py (per-module
timers on forward hooks), adapter_switch.py (stock pipelines on a UNet that holds the face
adapter), pipelines/speed.py (attention, channels-last, compile, offload, VAE tiling/slicing),
pipelines.py (the compared pipelines on shared modules), cases.py, runner.py (interleaved runs),
face_stage.py (face analysis timing), environment.py, report.py (markdown + JSON).
"""
