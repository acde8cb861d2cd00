"""Test and benchmark scaffolding: tiny and full-size random models in the released layouts.

tiny.py (tiny test models, written in the official layouts), random_sdxl.py (full-size random SDXL +
IdentityNet + adapter, built in memory), architectures.py (their configs), stage_timer.py (seconds per
stage of a timed bench call, from forward hooks attached around it: the one place the package hooks
modules). Nothing in generation imports this room; tests, `instantid generate --tiny` and `instantid
bench` do.
"""
