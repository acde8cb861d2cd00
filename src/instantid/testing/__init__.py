"""Test and benchmark scaffolding: tiny and full-size random models in the released layouts.

Nothing in generation imports this room; tests, `instantid bench` and `--tiny` do.
"""
