"""Streaming training data from WebDataset shards, split across ranks and data-loader workers, resumable
exactly mid-epoch.

Why the `webdataset` package (not `datasets` streaming): the shards are plain tars that `webdataset` reads
from local disk, NFS, `s3://`/`gs://` (fsspec) and `pipe:` commands with one call (`webdataset.gopen`), it
adds no cache or Arrow conversion between the tar and the trainer, and its low-level tar iterator leaves
the order entirely to us, which exact resume needs. Everything about order is ours and deterministic:

- epoch e's shard order is a permutation seeded by (seed, e), the same on every rank;
- rank r takes shards r, r + R, ...; within it, logical worker w takes every W-th of those;
- each logical worker streams its shards through a shuffle buffer seeded by (seed, e, r, w) and groups
  samples into batches of one aspect-ratio bucket (today's buckets and face-centred crops); the leftovers
  of each bucket end the worker's epoch as smaller batches, so an epoch covers every sample exactly once;
- every worker streams epoch after epoch without end (ranks never wait for each other at an epoch's end);
  the training loop stops at its step count.

A batch carries (worker, epoch, number within that worker's epoch). The loop records the last one taken
from each worker (`StreamPosition`), and a resumed stream skips exactly those batches, without decoding
them, and starts its round-robin at the worker the interrupted run would have read next. PyTorch's
DataLoader takes batches from its workers in a fixed cycle, so the resumed run sees the same batches in
the same order. Samples that cannot be read (a broken record, image bytes that do not decode) are skipped
and counted (`bad_samples` in each batch), never fatal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import Size, collate, conditions, cropped_pixels, nearest_bucket, plan_crop
from .errors import TrainingDataError
from .shards import ShardSample, decode_sample

logger = logging.getLogger(__name__)


@dataclass
class StreamPosition:
    """Per rank: the next batch of each logical worker as (epoch, number in that epoch), and the worker whose
    batch comes next. Saved in checkpoints."""

    next_batch: dict = field(default_factory=dict)  # logical worker -> [epoch, batch number]
    next_worker: int = 0
    bad_samples: int = 0

    def advance(self, batch: dict, num_workers: int) -> None:
        worker, epoch, number = batch["stream"]
        self.next_batch[worker] = [epoch, number + 1]
        self.next_worker = (worker + 1) % max(1, num_workers)
        self.bad_samples += int(batch.get("bad_samples", 0))

    def to_dict(self) -> dict:
        return {"next_batch": {str(k): v for k, v in self.next_batch.items()}, "next_worker": self.next_worker,
                "bad_samples": self.bad_samples}

    @classmethod
    def from_dict(cls, state: dict) -> "StreamPosition":
        return cls({int(k): list(v) for k, v in state.get("next_batch", {}).items()}, int(state.get("next_worker", 0)),
                   int(state.get("bad_samples", 0)))


def read_raw_samples(url: str):
    """Raw samples (dicts of bytes by extension) of one shard, via webdataset's tar reader (local paths,
    fsspec URLs, `pipe:` commands). A damaged tar ends its shard early with a warning."""
    import webdataset as wds

    yield from wds.tariterators.tarfile_samples([{"url": url}], handler=wds.warn_and_continue)


@dataclass
class ShardedData:
    """A sharded dataset as training sees it: the index, plus the first samples (validation inputs)."""

    urls: list[str]
    backend: str
    embedding_dim: int
    num_items: int
    items: list  # the first few ShardSamples
    skipped_rows: dict = field(default_factory=dict)

    @classmethod
    def open(cls, data_dir, head: int = 8) -> "ShardedData":
        from .shards import read_index, shard_urls

        index = read_index(data_dir)
        urls = shard_urls(data_dir, index)
        if not urls or not index.get("samples"):
            raise TrainingDataError(f"{data_dir}/index.json lists no samples; prepare data with faces and captions")
        items = []
        for raw in read_raw_samples(urls[0]):
            try:
                items.append(decode_sample(raw))
            except ValueError:
                continue
            if len(items) >= head:
                break
        return cls(urls, index["backend"], int(index["embedding_dim"]), int(index["samples"]), items)


class ShardStream(torch.utils.data.IterableDataset):
    """Batches (collated dicts) streamed from shards; see the module docstring for the order."""

    def __init__(self, urls: list[str], buckets: list[Size], batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, shuffle_buffer: int = 1000, num_workers: int = 0, reference=None):
        self.urls, self.buckets, self.batch_size, self.seed = list(urls), buckets, batch_size, seed
        self.rank, self.world_size, self.shuffle_buffer = rank, world_size, shuffle_buffer
        self.num_workers = max(1, num_workers)
        self.position = StreamPosition()
        self.reference = reference  # callable(sample, epoch) -> embedding, for --reference other / mixed:P
        if len(self.urls) < world_size * self.num_workers:
            raise TrainingDataError(
                f"{len(self.urls)} shards cannot feed {world_size} process(es) x {self.num_workers} data-loader "
                "worker(s): every worker streams whole shards. Prepare with a smaller --shard-size, or use fewer "
                "--dataloader_num_workers / processes")

    def resume_from(self, position: StreamPosition) -> None:
        self.position = StreamPosition(dict(position.next_batch), position.next_worker, position.bad_samples)

    # ---- the order -----------------------------------------------------------------------------

    def shards_of(self, epoch: int, worker: int) -> list[str]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.urls))
        mine = [self.urls[i] for i in order][self.rank::self.world_size]
        return mine[worker::self.num_workers]

    def samples(self, epoch: int, worker: int):
        """(sample or None, why) in the worker's shuffled order; None for a record that cannot be read."""
        rng = np.random.default_rng([self.seed, epoch, self.rank, worker])
        buffer: list = []
        for url in self.shards_of(epoch, worker):
            for raw in read_raw_samples(url):
                try:
                    item = decode_sample(raw)
                except ValueError as err:
                    logger.warning("%s: skipped a bad sample: %s", url, err)
                    item = None
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(item)
                    continue
                pick = int(rng.integers(len(buffer)))
                buffer[pick], item = item, buffer[pick]
                yield item
        for pick in rng.permutation(len(buffer)):
            yield buffer[pick]

    def batches_meta(self, epoch: int, worker: int):
        """Lists of samples of one bucket each (the last ones of each bucket may be smaller), and the count of
        records that could not be read, in order; nothing is decoded here."""
        pending: dict = {}
        bad = 0
        for item in self.samples(epoch, worker):
            if item is None:
                bad += 1
                continue
            bucket = nearest_bucket(item.width, item.height, self.buckets)
            pending.setdefault(bucket, []).append(item)
            if len(pending[bucket]) == self.batch_size:
                yield pending.pop(bucket), bad
                bad = 0
        for bucket in sorted(pending):
            yield pending[bucket], bad
            bad = 0
        if bad:
            yield [], bad  # unreadable records after the last batch

    # ---- decoding ------------------------------------------------------------------------------

    def example(self, item: ShardSample, epoch: int) -> dict:
        plan = plan_crop((item.width, item.height), nearest_bucket(item.width, item.height, self.buckets),
                         item.face_centre)
        embedding = item.embedding if self.reference is None else self.reference(item, epoch)
        return {"index": item.key, **conditions(item, plan, embedding),
                "pixel_values": cropped_pixels(item.image_bytes, (item.width, item.height), plan, f"sample {item.key}")}

    def decoded(self, items: list[ShardSample], epoch: int) -> tuple[list[dict], int]:
        examples, bad = [], 0
        for item in items:
            try:
                examples.append(self.example(item, epoch))
            except TrainingDataError as err:  # image bytes that do not decode
                logger.warning("skipped a bad sample: %s", err)
                bad += 1
        return examples, bad

    def worker_batches(self, worker: int):
        """This logical worker's batches, epoch after epoch. A batch is yielded once the next one is decoded,
        so the bad samples found after it in its epoch are counted with it (`bad_samples`)."""
        epoch, skip = self.position.next_batch.get(worker, [0, 0])
        while True:
            if not self.shards_of(epoch, worker):
                return
            held, carried = None, 0
            for number, (items, bad) in enumerate(self.batches_meta(epoch, worker)):
                if number < skip:
                    continue
                examples, undecodable = self.decoded(items, epoch)
                carried += bad + undecodable
                if not examples:
                    continue
                if held is not None:
                    yield held
                held = collate(examples)
                held["stream"], held["bad_samples"], carried = (worker, epoch, number), carried, 0
            if held is not None:
                held["bad_samples"] += carried
                yield held
            elif skip == 0:  # a whole epoch with nothing readable would otherwise loop forever
                raise TrainingDataError(f"none of the {carried} samples of worker {worker}'s shards in epoch {epoch} "
                                        "could be decoded (see the warnings above); rebuild the shards with prepare-data")
            epoch, skip = epoch + 1, 0

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        physical, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != self.num_workers:
            raise TrainingDataError(f"ShardStream was made for {self.num_workers} worker(s), the loader has {workers}")
        # the DataLoader reads its workers in a cycle starting at worker 0: rotate so that it starts with the
        # logical worker the interrupted run would have read next
        yield from self.worker_batches((physical + self.position.next_worker) % workers)


def make_loader(stream: ShardStream, num_workers: int) -> torch.utils.data.DataLoader:
    """Batches are made in the dataset (one bucket each), so the loader does no batching of its own."""
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers)
