"""`train(args)`: the whole training run, step by step. Each step is one call into a module of this package."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .args import tensorboard_available
from .cache import cache_for, fill_latent_cache, fill_text_cache
from .checkpoints import (
    TrainingProgress,
    checkpoint_dir,
    export_weights,
    partial_checkpoint_dir,
    register_checkpoint_hooks,
    resolve_resume,
    rotate_checkpoints,
)
from .conditioning import encode_captions
from .references import IdentityGroups, ReferenceMode
from .shards import is_sharded
from .stream import ShardedData, ShardStream, StreamPosition, make_loader
from .data import BucketBatchSampler, InstantIDDataset, collate, make_buckets, read_prepared_dataset
from .errors import TrainingConfigError
from .flux import DEFAULT_RESOLUTION as FLUX_DEFAULT_RESOLUTION, FLUX
from .loop import StepPlan, fixed_batch_loss, run_loop
from .loss_log import LOSS_LOG, LossLog, read_losses
from .model import load_components
from .validate import run_validation, validation_cases

logger = logging.getLogger(__name__)
SUMMARY_FILE = "training_summary.json"
SUMMARY_LOSSES = 1000


@dataclass
class TrainingResult:
    global_step: int
    losses: list[float]  # per optimizer step of this run
    fixed_batch_loss_before: float | None  # of this run's first step (main process)
    fixed_batch_loss_after: float | None
    exported: dict = field(default_factory=dict)  # "identitynet" / "adapter" -> path
    components: object = None  # the trained modules, for callers that go on using them


def train(args) -> TrainingResult:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    accelerator = make_accelerator(args)
    _seed_everything_else(args.seed)
    sharded = is_sharded(args.data_dir)
    prepared = ShardedData.open(args.data_dir) if sharded else read_prepared_dataset(args.data_dir)
    components = load_components(args, prepared.embedding_dim, frozen_dtype(accelerator), accelerator.device)
    resolution, bucket_step = training_resolution(args, components)
    progress = TrainingProgress()
    if sharded:
        stream = build_stream(args, prepared, accelerator, resolution, bucket_step)
        loader, sampler = make_loader(stream, args.dataloader_num_workers), StreamEpochs()
        progress.stream, progress.stream_workers = stream.position, stream.num_workers
        # an estimate (bad samples and bucket leftovers change it): epochs only set the LR schedule's length
        batches_per_epoch = math.ceil(prepared.num_items / (args.train_batch_size * accelerator.num_processes))
    else:
        dataset = build_dataset(args, prepared, components, accelerator, resolution, bucket_step)
        sampler = BucketBatchSampler(dataset.bucket_of, args.train_batch_size, args.seed,
                                     accelerator.num_processes, accelerator.process_index)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                             num_workers=args.dataloader_num_workers)
        batches_per_epoch = len(sampler)
    plan = StepPlan.from_args(args, batches_per_epoch)
    optimizer, lr_scheduler = build_optimizer(args, components.model, plan, accelerator)
    model, optimizer, lr_scheduler = accelerator.prepare(components.model, optimizer, lr_scheduler)

    accelerator.register_for_checkpointing(progress)
    register_checkpoint_hooks(accelerator, args.adapter_format)
    resume_from = resolve_resume(args.output_dir, args.resume_from_checkpoint)
    if resume_from is not None:
        accelerator.load_state(str(resume_from), **_deepspeed_kwargs(accelerator, "load"))
        logger.info("resumed from %s at step %d", resume_from, progress.global_step)
        if sharded and progress.stream_positions:
            stream.resume_from(StreamPosition.from_dict(progress.stream_positions[accelerator.process_index]))
            progress.stream = stream.position
    start_trackers(accelerator, args)

    cases = validation_cases(args, prepared) if args.validation_steps else []
    empty_text = encode_captions(components.pipe, components.family, [""], accelerator.device) if args.text_dropout else None
    fixed_batch = first_stream_batch(stream) if sharded else collate([dataset[i] for i in sampler.all_batches(0)[0]])
    loss_before = _fixed_batch_loss(accelerator, components, fixed_batch, args.seed)
    run_start = _record_run_start(args.output_dir, loss_before, resumed=resume_from is not None) \
        if accelerator.is_main_process else {}

    def after_step(step: int) -> None:
        if step % args.checkpointing_steps == 0 or step == plan.max_train_steps:
            if progress.stream is not None:  # every rank's stream position goes into the checkpoint
                from accelerate.utils import gather_object

                progress.stream_positions = gather_object([progress.stream.to_dict()])
            save_checkpoint(accelerator, args, step)
        if args.validation_steps and step % args.validation_steps == 0 and accelerator.is_main_process:
            run_validation(accelerator, components.pipe, cases, step, args, resolution, bucket_step)

    loss_log = LossLog(args.output_dir, fresh=resume_from is None) if accelerator.is_main_process else None
    outcome = run_loop(accelerator, components, model, optimizer, lr_scheduler, loader, sampler, progress, plan,
                       args, after_step, empty_text, on_loss=loss_log.append if loss_log else None)
    accelerator.wait_for_everyone()
    result = TrainingResult(progress.global_step, outcome.losses, loss_before, None, components=components)
    if accelerator.is_main_process:
        result.fixed_batch_loss_after = _fixed_batch_loss(accelerator, components, fixed_batch, args.seed)
        result.exported = export_weights(components.model, args.output_dir, args.adapter_format)
        write_summary(args, prepared, result, accelerator.num_processes, run_start,
                      bad_samples=progress.stream.bad_samples if progress.stream is not None else None)
    accelerator.end_training()
    return result


# ---- the steps ----------------------------------------------------------------------------------

def make_accelerator(args):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
    output_dir = Path(args.output_dir)
    project = ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir))
    # Several processes (torchrun / accelerate launch) on a machine without GPUs: tell accelerate to use
    # gloo on the CPU, or each process would silently train alone into the same folder.
    cpu_only_distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(gradient_accumulation_steps=args.gradient_accumulation_steps,
                              mixed_precision=args.mixed_precision, log_with=tracker_name(args), project_config=project,
                              cpu=cpu_only_distributed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None:  # our data loader is not prepared by accelerate, so DeepSpeed cannot infer it
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = args.train_batch_size
    return accelerator


def tracker_name(args) -> str | None:
    """The tracker `--report_to` asks for ("auto": TensorBoard where installed, with a warning where not)."""
    if args.report_to == "none":
        return None
    if args.report_to == "auto" and not tensorboard_available():
        logger.warning("TensorBoard is not installed: no training curves are logged (pip install tensorboard)")
        return None
    return "tensorboard"


def _seed_everything_else(seed: int) -> None:
    """Noise, data order and initial weights take explicit seeds; this covers library internals."""
    from accelerate.utils import set_seed

    set_seed(seed)


def frozen_dtype(accelerator) -> torch.dtype:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def training_resolution(args, components) -> tuple[int, int]:
    """(resolution, bucket step): default resolution is the base's native one; sides are multiples of
    8 latent pixels, so every UNet level divides them."""
    vae_factor = components.pipe.vae_scale_factor
    step = vae_factor * 8  # FLUX: also a multiple of its 2x2 latent patches
    default = FLUX_DEFAULT_RESOLUTION if components.family == FLUX else components.unet.config.sample_size * vae_factor
    resolution = args.resolution or default
    if resolution < step:
        raise TrainingConfigError(f"--resolution {resolution} is below this base's smallest size, {step} pixels")
    return resolution, step


def build_dataset(args, prepared, components, accelerator, resolution: int, bucket_step: int) -> InstantIDDataset:
    buckets = make_buckets(resolution, bucket_step, args.max_aspect_ratio)
    mode = ReferenceMode.parse(args.reference)
    references = None
    if mode.pairs:
        groups = IdentityGroups([item.identity for item in prepared.items])
        references = (mode, groups, args.seed)
        logger.info("--reference %s: %d of %d items have another photo of their person", args.reference,
                    groups.pairable(), len(prepared.items))
        if not groups.pairable():
            raise TrainingConfigError(f"--reference {args.reference} needs identity labels with two or more photos per "
                                      "person; this data has none (prepare with an `identity` column, "
                                      "--identity-from-folder or --group-identities)")
    dataset = InstantIDDataset(prepared.items, buckets, references=references)
    depends_on = dict(base=str(args.pretrained_model_name_or_path), resolution=resolution, buckets=buckets)
    with accelerator.main_process_first():  # the main process fills the caches, the others only read them
        if args.cache_latents:
            dataset.latent_cache = cache_for(args.output_dir, "latents", **depends_on)
            fill_latent_cache(dataset, dataset.latent_cache, components.vae, args.train_batch_size,
                              progress=accelerator.is_local_main_process)
        if args.cache_text_embeddings:
            dataset.text_cache = cache_for(args.output_dir, "text", base=depends_on["base"])
            fill_text_cache(prepared.items, dataset.text_cache, components.pipe, components.family,
                            accelerator.device, args.train_batch_size, progress=accelerator.is_local_main_process)
    if prepared.skipped_rows:
        logger.warning("manifest rows skipped: %s", dict(prepared.skipped_rows))
    return dataset


def build_stream(args, data: ShardedData, accelerator, resolution: int, bucket_step: int) -> ShardStream:
    if args.cache_latents or args.cache_text_embeddings:
        raise TrainingConfigError("--cache_latents / --cache_text_embeddings work on a prepared folder, not on shards "
                                  "(a cache of a stream would be a second copy of it); drop the flags")
    if ReferenceMode.parse(args.reference).pairs:
        raise TrainingConfigError("--reference other / mixed:P needs identity labels from a prepared folder; "
                                  "streaming shards pairs nothing yet: use the folder format (or --from-folder's "
                                  "source) for paired references")
    return ShardStream(data.urls, make_buckets(resolution, bucket_step, args.max_aspect_ratio), args.train_batch_size,
                       args.seed, accelerator.process_index, accelerator.num_processes, args.shuffle_buffer,
                       args.dataloader_num_workers)


class StreamEpochs:
    """The stream runs epoch after epoch by itself; the loop's epoch calls have nothing to do."""

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        pass


def first_stream_batch(stream: ShardStream) -> dict:
    """The fixed batch: the first batch of epoch 0 of worker 0 (read without touching the training position)."""
    copy = ShardStream(stream.urls, stream.buckets, stream.batch_size, stream.seed, stream.rank, stream.world_size,
                       stream.shuffle_buffer, stream.num_workers)
    return next(iter(copy.worker_batches(0)))


def build_optimizer(args, model, plan: StepPlan, accelerator):
    from diffusers.optimization import get_scheduler

    if args.use_8bit_adam:
        try:
            import bitsandbytes
        except ImportError as err:
            raise TrainingConfigError("--use_8bit_adam needs bitsandbytes: pip install bitsandbytes") from err
        optimizer_class = bitsandbytes.optim.AdamW8bit
    else:
        optimizer_class = torch.optim.AdamW
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = optimizer_class(parameters, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    # accelerate steps a prepared scheduler once per process for each optimizer step
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=plan.max_train_steps * accelerator.num_processes)
    logger.info("training %.1fM parameters for %d steps", sum(p.numel() for p in parameters) / 1e6,
                plan.max_train_steps)
    return optimizer, lr_scheduler


def start_trackers(accelerator, args) -> None:
    if accelerator.is_main_process and accelerator.log_with:
        config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in vars(args).items()
                  if k != "run"}
        accelerator.init_trackers(args.tracker_project_name, config=config)


def _fixed_batch_loss(accelerator, components, batch: dict, seed: int) -> float | None:
    """On the main process, in the run's precision (frozen weights may be fp16/bf16)."""
    if not accelerator.is_main_process:
        return None
    with accelerator.autocast():
        return fixed_batch_loss(components, batch, seed)


def save_checkpoint(accelerator, args, step: int) -> Path:
    folder = checkpoint_dir(args.output_dir, step)
    partial = partial_checkpoint_dir(folder)  # renamed once every process has written its part
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial), **_deepspeed_kwargs(accelerator, "save"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if folder.exists():
            shutil.rmtree(folder)  # this step saved before a crash and redone after resuming
        os.replace(partial, folder)
        rotate_checkpoints(args.output_dir, args.checkpoints_total_limit)  # only now: the newest is complete
    accelerator.wait_for_everyone()
    logger.info("saved %s", folder)
    return folder


def _deepspeed_kwargs(accelerator, action: str) -> dict:
    """Under DeepSpeed the engine checkpoints the model itself: leave the frozen base out of it."""
    if accelerator.state.deepspeed_plugin is None:
        return {}
    return {"exclude_frozen_parameters": True} if action == "save" else {"load_module_strict": False}


RUN_START_FILE = "run_start.json"


def _record_run_start(output_dir, loss_before: float | None, resumed: bool) -> dict:
    """The fixed-batch loss when the run first started, kept across resumes (a fresh run rewrites it)."""
    path = Path(output_dir) / RUN_START_FILE
    if resumed and path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    start = {"fixed_batch_loss_before": loss_before}
    path.write_text(json.dumps(start), encoding="utf-8")
    return start


def write_summary(args, prepared, result: TrainingResult, num_processes: int, run_start: dict | None = None,
                  bad_samples: int | None = None) -> None:
    """The whole run, across resumes: losses come from the loss log (losses.jsonl), not just this process."""
    logged = read_losses(args.output_dir, up_to_step=result.global_step)
    summary = {"global_step": result.global_step, "fixed_batch_loss_before": result.fixed_batch_loss_before,
               "fixed_batch_loss_after": result.fixed_batch_loss_after,
               "fixed_batch_loss_at_run_start": (run_start or {}).get("fixed_batch_loss_before"),
               "steps_logged": len(logged), "first_logged_step": next(iter(logged), None), "loss_log": LOSS_LOG,
               "losses": list(logged.values())[-SUMMARY_LOSSES:],  # per step, the last ones (losses.jsonl has all)
               "face_backend": prepared.backend, "embedding_dim": prepared.embedding_dim,
               "items": prepared.num_items, "storage": "shards" if bad_samples is not None else "folder",
               "bad_samples": bad_samples,  # streaming: unreadable samples the main process skipped, across resumes
               "num_processes": num_processes, "exported": {k: str(v) for k, v in result.exported.items()}}
    (Path(args.output_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
