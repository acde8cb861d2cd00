"""The service room: `instantid serve` (FastAPI + a durable job queue), Ray Serve scale-out, `instantid ui`.

engine.py is the only module that calls the library's generation code; the rest is web plumbing.
"""
