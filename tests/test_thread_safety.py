"""Per-call state is safe: two threads calling one shared pipeline (the drop-in API on the official-parity
fixture, different faces, seeds, adapter scales and a face region in one of them) each get exactly what the
same call gives alone. Calls on the same weights are serialised by the pipeline's call lock (the stock
pipelines keep a call's scheduler state on shared objects); InstantID's own per-call state (face tokens,
regions, adapter scales, call constants) is held in context variables, so it never leaks between calls."""

from __future__ import annotations

import threading

import numpy as np
import torch

from instantid.face.keypoints import draw_kps
from shared_fixtures import load_parity_pipeline

KPS = [[20, 25], [44, 25], [32, 38], [23, 50], [41, 50]]


def call(pipe, embedding, seed, **extra):
    return pipe(prompt="a photo of a person", image_embeds=embedding, image=draw_kps((64, 64), KPS),
                num_inference_steps=2, guidance_scale=5.0, output_type="latent",
                generator=torch.Generator("cpu").manual_seed(seed), **extra).images


def test_two_threads_calling_one_pipeline_get_their_single_threaded_results():
    pipe = load_parity_pipeline()
    other_face = np.random.default_rng(7).normal(size=pipe.embedding.shape).astype(np.float32) * \
        float(np.abs(pipe.embedding).mean())
    jobs = [dict(embedding=pipe.embedding, seed=1, ip_adapter_scale=0.3),
            dict(embedding=other_face, seed=2, ip_adapter_scale=1.2, face_region_mask=(16, 16, 48, 56))]
    alone = [call(pipe, **job) for job in jobs]
    assert not torch.equal(alone[0], alone[1])

    results = [[None] * 2 for _ in jobs]
    start = threading.Barrier(len(jobs))

    def worker(index):
        start.wait()
        for round_ in range(2):
            results[index][round_] = call(pipe, **jobs[index])

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, job_results in enumerate(results):
        for result in job_results:
            assert torch.equal(result, alone[index])
    # and the pipeline's lasting adapter scale is the one it was loaded with, whatever the calls asked for
    assert torch.equal(call(pipe, pipe.embedding, 1, ip_adapter_scale=0.3), alone[0])


def test_a_call_inside_a_call_keeps_both_calls_state():
    """Re-entrant: a step callback that runs a pipeline sharing the same weights (from_pipe, with its own
    scheduler: the stock scheduler keeps its call's state) with another face and scale leaves the outer call's
    face, scale and region in place."""
    pipe = load_parity_pipeline()
    twin = type(pipe).from_pipe(pipe, scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config))
    other_face = -pipe.embedding
    inner = []

    def nested(pipeline, step, timestep, kwargs):
        if step == 0:
            inner.append(call(twin, other_face, 5, ip_adapter_scale=1.0))
        return kwargs

    outer = dict(embedding=pipe.embedding, seed=1, ip_adapter_scale=0.3, face_region_mask=(16, 16, 48, 56))
    plain = call(pipe, **outer)
    assert torch.equal(call(pipe, **outer, callback_on_step_end=nested), plain)
    assert torch.equal(inner[0], call(twin, other_face, 5, ip_adapter_scale=1.0))
