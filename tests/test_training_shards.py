"""Training data as WebDataset shards: prepare-data --shards on Ray Data, --from-folder, streaming training
(same samples and losses as the folder format, exact resume after SIGKILL, two ranks, bad samples)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from instantid.training.prepare import PrepareOptions, prepare_dataset
from instantid.training.prepare_shards import ShardOptions, convert_folder
from instantid.training.shards import INDEX, decode_sample, read_index, shard_urls
from instantid.training.stream import ShardStream, read_raw_samples
from test_training_helpers import PREPARE_MIN_SIZES, one_torch_thread, training_photos  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHARD_SIZE = 5  # 18 source items -> 4 chunks


@pytest.fixture(scope="module")
def folder(training_photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "data"
    assert prepare_dataset(training_photos, out, PrepareOptions(progress=False, **PREPARE_MIN_SIZES)).usable == 16
    return out


@pytest.fixture(scope="module")
def converted(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "shards"
    report = convert_folder(folder, out, ShardOptions(shard_size=4))
    assert report.samples == 16 and report.shards == 4
    return out


def all_samples(data_dir) -> dict:
    index = read_index(data_dir)
    samples = {}
    for url in shard_urls(data_dir, index):
        for raw in read_raw_samples(url):
            sample = decode_sample(raw)
            assert sample.key not in samples
            samples[sample.key] = sample
    return samples


def assert_same_as_folder(folder, samples: dict) -> None:
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert sorted(samples) == sorted(row["id"] for row in rows)
    for row in rows:
        sample = samples[row["id"]]
        assert sample.caption == row["caption"]
        assert (sample.width, sample.height) == (row["width"], row["height"])
        assert list(sample.bbox) == row["bbox"]
        np.testing.assert_array_equal(sample.kps, np.asarray(row["kps"], dtype=np.float32))  # as training reads them
        assert sample.score == row["score"]
        assert sample.image_bytes == Path(row["image"]).read_bytes()  # as they came, never re-encoded
        np.testing.assert_array_equal(sample.embedding, np.load(folder / row["embedding"]).reshape(-1))


@pytest.mark.ray
@pytest.mark.slow  # a local Ray and two dlib actors: ~1 min on 2 shared cores
def test_ray_data_writes_the_folder_paths_samples_and_resumes(training_photos, folder, tmp_path):
    import ray

    from instantid.training.prepare_shards import prepare_shards
    from instantid.training.shards import done_path

    out = tmp_path / "shards"
    options = PrepareOptions(progress=False, workers=2, **PREPARE_MIN_SIZES)
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    try:
        report = prepare_shards(training_photos, out, options, ShardOptions(shard_size=SHARD_SIZE))
        assert report.samples == 16 and report.chunks_done_before == 0
        assert report.rejected == {"corrupt_image": 1, "missing_caption": 1, "no_face": 1}
        index = read_index(out)
        assert index["backend"] == "dlib" and index["embedding_dim"] == 128 and index["format_version"] == 1
        assert sum(s["samples"] for s in index["shards"]) == 16 and len(index["shards"]) == 4
        rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
        assert sorted(r["reason"] for r in rejected) == ["corrupt_image", "missing_caption", "no_face"]
        workers = {json.loads(done_path(out, n).read_text())["worker"] for n in range(4)}
        assert len(workers) == 2, "both Ray Data actors should have analysed chunks"
        assert_same_as_folder(folder, all_samples(out))

        # a rerun skips finished chunks; a chunk without its .done.json (killed mid-way) is redone
        first = index["shards"][0]["name"]
        done_path(out, 0).unlink()
        (out / first).write_bytes(b"torn")
        again = prepare_shards(training_photos, out, options, ShardOptions(shard_size=SHARD_SIZE))
        assert again.chunks_done_before == 3 and again.samples == 16
        assert_same_as_folder(folder, all_samples(out))
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_from_folder_converts_every_sample_field_by_field(folder, converted):
    assert_same_as_folder(folder, all_samples(converted))
    assert (converted / INDEX).is_file() and read_index(converted)["samples"] == 16


def _tiny_training(folder, out, base):
    from instantid.training.args import parse_args
    from instantid.training.model import load_components

    args = parse_args(["--data_dir", str(folder), "--output_dir", str(out), "--base", str(base), "--resolution", "32",
                       "--resampler_width", "64", "--report_to", "none", "--train_batch_size", "2"])
    return load_components(args, 128, torch.float32, "cpu")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from instantid.testing.tiny import build_tiny_instantid

    return build_tiny_instantid(tmp_path_factory.mktemp("tiny-sdxl"), arch="sdxl", embedding_dim=128).base


def test_stream_batches_equal_folder_batches_and_give_identical_losses(folder, converted, tiny_base, tmp_path):
    from instantid.training.data import InstantIDDataset, collate, make_buckets, read_prepared_dataset
    from instantid.training.loop import batch_generator, compute_loss

    buckets = make_buckets(32, 16, 2.0)
    prepared = read_prepared_dataset(folder)
    dataset = InstantIDDataset(prepared.items, buckets)
    position = {item.id: i for i, item in enumerate(prepared.items)}
    stream = ShardStream(shard_urls(converted, read_index(converted)), buckets, 2, seed=0, shuffle_buffer=5)
    components = _tiny_training(folder, tmp_path / "run", tiny_base)
    seen = []
    for number, batch in enumerate(stream.worker_batches(0)):
        if batch["stream"][1] > 0:
            break
        same = collate([dataset[position[key]] for key in batch["index"]])
        for key in ("pixel_values", "kps_image", "face_embedding", "time_ids"):
            assert torch.equal(batch[key], same[key]), key
        assert batch["caption"] == same["caption"]
        if number < 3:
            losses = [compute_loss(components, components.model, b, batch_generator(0, 0, number)).item()
                      for b in (batch, same)]
            assert losses[0] == losses[1]
        seen += batch["index"]
    assert sorted(seen) == sorted(position), "one epoch covers every sample exactly once"


def _train_command(data, base, out, *extra):
    return [sys.executable, "-m", "instantid", "train", "--data_dir", str(data), "--output_dir", str(out),
            "--base", str(base), "--resolution", "32", "--learning_rate", "1e-3", "--resampler_width", "64",
            "--report_to", "none", "--seed", "0", "--validation_steps", "0", "--threads", "1",
            "--dataloader_num_workers", "2", "--shuffle_buffer", "3", *extra]


def _weights(folder):
    from safetensors.torch import load_file

    from instantid.models.adapter import load_adapter_state_dict

    state = load_adapter_state_dict(folder / "ip-adapter.bin")
    flat = {f"{part}/{k}": v for part, tensors in state.items() for k, v in tensors.items()}
    flat.update({f"identitynet/{k}": v for k, v in
                 load_file(folder / "ControlNetModel" / "diffusion_pytorch_model.safetensors").items()})
    return flat


def _losses(out) -> list[float]:
    return json.loads((out / "training_summary.json").read_text())["losses"]


@pytest.mark.slow  # three training processes: ~1.5 min on 2 shared cores
def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(converted, tiny_base, tmp_path):
    steps, every = 14, 4
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"
    done = subprocess.run(_train_command(converted, tiny_base, full, "--max_train_steps", str(steps),
                                         "--checkpointing_steps", "100"), capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    command = _train_command(converted, tiny_base, killed, "--max_train_steps", str(steps), "--checkpointing_steps",
                             str(every))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 400
    while not (killed / f"checkpoint-{every}" / "custom_checkpoint_0.pkl").is_file():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.2)
    time.sleep(1.0)  # let it train on past the checkpoint, as a real crash would
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "training_summary.json").exists()

    resumed = subprocess.run(command + ["--resume_from_checkpoint", "latest"], capture_output=True, text=True,
                             env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _losses(killed) == _losses(full) and len(_losses(full)) == steps
    expected, got = _weights(full), _weights(killed)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected), "resumed weights differ"


RANKS_SCRIPT = """
import json, sys
from accelerate import Accelerator
from accelerate.utils import gather_object
from instantid.training.data import make_buckets
from instantid.training.shards import read_index, shard_urls
from instantid.training.stream import ShardStream

data, out = sys.argv[1], sys.argv[2]
accelerator = Accelerator(cpu=True)
seen = {}
for epoch in (0, 1):
    stream = ShardStream(shard_urls(data, read_index(data)), make_buckets(32, 16, 2.0), 2, seed=3,
                         rank=accelerator.process_index, world_size=accelerator.num_processes, num_workers=2)
    keys = []
    for worker in range(2):
        stream.position.next_batch[worker] = [epoch, 0]
        for batch in stream.worker_batches(worker):
            if batch["stream"][1] != epoch:
                break
            keys += batch["index"]
    seen[epoch] = gather_object([keys])
if accelerator.is_main_process:
    json.dump({"ranks": accelerator.num_processes, "seen": seen}, open(out, "w"))
accelerator.wait_for_everyone()
accelerator.end_training()  # destroys the process group: a rank exiting with it alive can abort in gloo's threads
"""


@pytest.mark.slow  # two torchrun processes
def test_two_ranks_stream_disjoint_shards_covering_every_sample_once_per_epoch(converted, tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT)
    result = tmp_path / "seen.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               str(converted), str(result)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(result.read_text())
    assert report["ranks"] == 2
    everything = sorted(all_samples(converted))
    for epoch, per_rank in report["seen"].items():
        assert all(per_rank), f"epoch {epoch}: a rank saw nothing"
        assert not set(per_rank[0]) & set(per_rank[1]), "the ranks' shards overlap"
        assert sorted(per_rank[0] + per_rank[1]) == everything, f"epoch {epoch} is not every sample exactly once"
    assert report["seen"]["0"] != report["seen"]["1"], "epochs should be shuffled differently"


def test_bad_samples_inside_a_shard_are_skipped_and_counted(converted, tmp_path):
    """A shard with a truncated image, a broken record and a missing embedding: three skipped, counted."""
    urls = shard_urls(converted, read_index(converted))
    raw = list(read_raw_samples(urls[0]))
    assert len(raw) == 4
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tar:
        for number, sample in enumerate(raw):
            sample = dict(sample)
            image_ext = json.loads(sample["json"])["image_ext"]
            if number == 0:
                sample[image_ext] = sample[image_ext][: len(sample[image_ext]) // 4]  # truncated image
            elif number == 1:
                sample["json"] = b"{not json"
            elif number == 2:
                del sample["npy"]
            for ext, value in sample.items():
                if ext.startswith("__"):
                    continue
                info = tarfile.TarInfo(f"{sample['__key__']}.{ext}")
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
    from instantid.training.data import make_buckets

    stream = ShardStream([str(broken)], make_buckets(32, 16, 2.0), 2, seed=0)
    batches = []
    for batch in stream.worker_batches(0):
        if batch["stream"][1] > 0:
            break
        batches.append(batch)
        stream.position.advance(batch, 1)
    assert sum(len(b["index"]) for b in batches) == 1
    assert stream.position.bad_samples == 3


def test_a_shard_with_nothing_readable_is_an_error_not_an_endless_loop(converted, tmp_path):
    """Every image truncated: the stream says so instead of cycling through empty epochs forever."""
    urls = shard_urls(converted, read_index(converted))
    unreadable = tmp_path / "unreadable.tar"
    with tarfile.open(unreadable, "w") as tar:
        for sample in read_raw_samples(urls[0]):
            image_ext = json.loads(sample["json"])["image_ext"]
            sample = {**sample, image_ext: sample[image_ext][: len(sample[image_ext]) // 4]}
            for ext, value in sample.items():
                if ext.startswith("__"):
                    continue
                info = tarfile.TarInfo(f"{sample['__key__']}.{ext}")
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
    from instantid.training.data import make_buckets
    from instantid.training.errors import TrainingDataError

    stream = ShardStream([str(unreadable)], make_buckets(32, 16, 2.0), 2, seed=0)
    with pytest.raises(TrainingDataError, match="could be decoded"):
        next(iter(stream.worker_batches(0)))
