"""The training loop. Read top to bottom: ``train`` (lock, log, stop flag) → ``build_context``
(load → data → LoRA → caches → optimizer, into one ``Context``) → ``_loop`` (step → events →
validation and samples → checkpoint → stop?) → save. Each phase is a plain function of the Context.

Everything a run produces goes to its run folder (lorawb.train.runfolder):
events.jsonl as it happens, train.log, samples/, checkpoints/ (kohya format),
state/ (resume). Every checkpoint saves the resume state with it (atomically), so
a run killed at any moment resumes from its last checkpoint. A stop request
(``lorawb stop``, SIGTERM, Ctrl-C) is honoured between steps: the trainer saves a
checkpoint and its resume state, records ``stopped``, and returns. Resume restores
the LoRA weights, optimizer, lr scheduler, RNG and the position in the data order,
so the loss curve goes on exactly as an uninterrupted run's would.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lorawb.errors import LorawbError, RunError
from lorawb.families import Model, Noised, TextCond, load_base_model
from lorawb.train import bigmodel, kohya, trackers
from lorawb.train import data as D
from lorawb.train import speed as S
from lorawb.train.batches import Batch, Batches, cache_root, center_crop, seed_for
from lorawb.train.caches import LatentCache, save_torch
from lorawb.train.config import TrainConfig, load_run_config
from lorawb.train.detached import StopFlag, hold_lock, job_log
from lorawb.train.events import EventWriter
from lorawb.train.lora import LoraSetup, add_lora, init_from_file, load_trainable_state, trainable_state
from lorawb.train.runfolder import RunFolder

ProgressFn = Callable[[dict[str, Any]], None]


class TrainingError(LorawbError):
    """Training went wrong in a way the user can act on (NaN loss, out of memory)."""


OOM_HINT = (
    "lower train.batch_size or dataset.resolution, set train.gradient_checkpointing = true, "
    "train.mixed_precision = 'bf16', or a smaller network.rank"
)
NAN_HINT = (
    "the run was stopped; lower train.learning_rate, use mixed_precision 'bf16' instead of 'fp16', "
    "or set train.max_grad_norm = 1.0"
)


@dataclass
class TrainState:
    """What resume needs besides weights and optimizer: the step and the data position."""

    step: int = 0
    pos: D.Position = field(default_factory=D.Position)
    elapsed: float = 0.0  # training seconds before this process
    started_at: float = field(default_factory=time.time)
    checkpoints: list[str] = field(default_factory=list)  # written so far (save.keep_last prunes them)


@dataclass
class Context:
    """Everything the phases share, built once in ``_train``: each phase is a plain function of it."""

    cfg: TrainConfig
    run: RunFolder
    acc: Any  # the Accelerator
    model: Model  # its denoiser and (when trained) text encoders are the prepared, possibly wrapped, modules
    dataset: D.DatasetInfo
    lora: LoraSetup
    batches: Batches
    optimizer: Any
    lr_scheduler: Any
    events: Any  # EventWriter (NullEvents on other ranks)
    log: logging.Logger
    stop: StopFlag
    max_steps: int
    num_epochs: int  # epochs max_steps covers (kohya's ss_num_epochs)
    dtype: torch.dtype  # of the frozen base weights (the LoRA trains in fp32)
    mixed_precision: str  # as actually used: "no" where the device cannot do what was asked
    trained: list[Any]  # the prepared modules that train: the denoiser, then the text encoders if trained
    progress: ProgressFn | None = None
    state: TrainState = field(default_factory=TrainState)
    checkpoints: list[Path] = field(default_factory=list)
    val_cache: LatentCache | None = None
    trackers: list[Any] = field(default_factory=list)
    rate: Rate = field(default_factory=lambda: Rate())
    meter: S.LossMeter = field(default_factory=S.LossMeter)  # step losses since the last step event
    log_every: int = 1  # steps between step events (train.log_every_n_steps, resolved for the device)
    parking: S.Parking | None = None  # the frozen networks the caches make idle, off the GPU
    loss_ema: float | None = None
    resumed_from: int | None = None
    _lora_layers: list[Any] | None = None

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.acc.unwrap_model(self.model.denoiser)

    @property
    def text_encoders(self) -> list[torch.nn.Module]:
        return [self.acc.unwrap_model(te) for te in self.model.text_encoders]

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return self.lora.unet_params + self.lora.te_params

    @property
    def lora_layers(self) -> list[Any]:
        """The denoiser's LoRA layers (output preservation switches them off for the base prediction)."""
        from lorawb.train.lora import adapter_layers

        if self._lora_layers is None:
            self._lora_layers = adapter_layers(self.denoiser)
        return self._lora_layers


# --- the run --------------------------------------------------------------------------------------


def train(
    run: RunFolder, *, resume: bool = False, progress: ProgressFn | None = None, lock_fd: int | None = None
) -> str:
    """Train (or resume) the run in ``run``; returns the final state (finished or stopped).

    Failures are recorded as a ``failed`` status with an error and a hint, then re-raised.
    ``lock_fd``: the run lock, already taken by the launcher (lorawb.train.process).
    """
    cfg = load_run_config(run.config)
    rank = int(os.environ.get("RANK", "0"))  # set by accelerate/torchrun; only rank 0 owns the run folder
    held = rank != 0 or os.environ.get("LORAWB_LOCK_HELD") == "1"
    lock = contextlib.nullcontext() if held else run_lock(run, lock_fd)
    writer = EventWriter(run.events) if rank == 0 else NullEvents()
    with lock, writer as events, run_log(run, rank) as log, StopFlag(run) as stop:
        if rank == 0:
            sweep_killed_saves(run, log)
        try:
            return _train(run, cfg, resume, events, log, stop, progress)
        except BaseException as exc:
            failure = exc
            if isinstance(exc, torch.OutOfMemoryError):  # while loading or caching: no step yet
                failure = out_of_memory(exc, run, cfg, None)
            error, hint = describe_failure(failure)
            log.exception("run failed: %s", error)
            events.status("failed", error=error, hint=hint)
            if failure is not exc:
                raise failure from exc
            raise


def sweep_killed_saves(run: RunFolder, log: logging.Logger) -> None:
    """Remove the temp files of saves a kill interrupted (a checkpoint, the resume state, a sample):
    at every start and resume, under the run lock, so no save of this run is under way."""
    from lorawb.core.fsutil import remove_temp_files

    removed = remove_temp_files([run.path, run.checkpoints, run.state, run.samples])
    if removed:
        names = ", ".join(os.path.relpath(p, run.path) for p in removed[:3])
        more = f" and {len(removed) - 3} more" if len(removed) > 3 else ""
        log.info("removed %d temp file(s) of interrupted saves: %s%s", len(removed), names, more)


def _train(
    run: RunFolder,
    cfg: TrainConfig,
    resume: bool,
    events: Any,
    log: logging.Logger,
    stop: StopFlag,
    progress: ProgressFn | None,
) -> str:
    events.status("starting", resumed=resume)
    ctx = build_context(run, cfg, events, log, stop, progress, resume=resume)
    try:
        if resume:
            resume_state(ctx)
        return _loop(ctx)
    except torch.OutOfMemoryError as exc:
        raise out_of_memory(exc, run, cfg, ctx) from exc
    finally:
        ctx.batches.close()


def out_of_memory(exc: BaseException, run: RunFolder, cfg: TrainConfig, ctx: Context | None) -> TrainingError:
    """The run ends on an out-of-memory error with the step, the memory at the time and the next lever
    from the memory plan. With a Context, the memory is freed and the last completed step saved (LoRA
    and resume state), so `lorawb resume RUN --set LEVER` continues from there."""
    from lorawb.train.memplan import next_lever

    device = ctx.acc.device if ctx is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    allocated, peak, total = bigmodel.memory_now(device)
    step = ctx.state.step + 1 if ctx is not None else 0
    if ctx is not None:
        ctx.optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        try:
            save_checkpoint(ctx)
        except Exception:  # saving must not hide the error it follows
            ctx.log.exception("could not save the state after running out of memory")
    report = bigmodel.OomReport(step, allocated, peak, total)
    lever = next_lever(cfg)
    if lever is not None:
        report.lever, report.lever_plan_gb = lever[0].spec, lever[1].peak_gb
    message = (
        report.message() if ctx is not None else "out of GPU memory while loading the model and filling the caches"
    )
    return TrainingError(message, hint=report.hint(run.id))


def build_context(
    run: RunFolder,
    cfg: TrainConfig,
    events: Any,
    log: logging.Logger,
    stop: StopFlag,
    progress: ProgressFn | None = None,
    resume: bool = False,
) -> Context:
    """Load → data → LoRA → caches → optimizer: everything the loop needs (close ``ctx.batches`` after)."""
    trackers.check_available(cfg.train.log_with)
    quiet_libraries()
    acc, mixed_precision = make_accelerator(cfg, log)
    setup_torch(cfg, acc.device)
    dtype = weight_dtype(cfg, acc.device)
    log.info(
        "device %s, %d process(es), weights %s, mixed precision %s, %d CPU threads",
        acc.device,
        acc.num_processes,
        dtype,
        mixed_precision,
        torch.get_num_threads(),
    )
    model = load_base_model(cfg.model, acc.device, dtype, cfg, place=False)  # a big model's denoiser: after the caches
    log.info("base model %s (%s, %s prediction)", model.source, model.family, model.prediction_type)
    dataset = load_data(cfg, log, events)
    if acc.is_main_process:
        record_dataset(run, cfg, dataset, keep=resume)
    warn_setup(cfg, model, dataset, log, events)
    lora = setup_network(cfg, model, log, init_from=not resume)
    batches = Batches(cfg, model, dataset, run, log, acc.num_processes, acc.process_index)
    try:
        parking = speed_levers(cfg, model, batches, acc.device, log)
        bigmodel.place(model, log)
        optimizer = make_optimizer(cfg, lora, acc.device)
        micro_per_step = cfg.train.grad_accum * acc.num_processes
        per_epoch = batches.stream.batches_per_epoch
        max_steps = D.total_steps(cfg.train.max_steps, cfg.train.epochs, per_epoch, micro_per_step)
        lr_scheduler = make_lr_scheduler(cfg, optimizer, max_steps)
        trained, optimizer = prepare(acc, model, cfg, optimizer)
    except BaseException:
        batches.close()
        raise
    return Context(
        cfg=cfg,
        run=run,
        acc=acc,
        model=model,
        dataset=dataset,
        lora=lora,
        batches=batches,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        events=events,
        log=log,
        stop=stop,
        max_steps=max_steps,
        num_epochs=math.ceil(max_steps / max(1, math.ceil(per_epoch / micro_per_step))),
        dtype=dtype,
        mixed_precision=mixed_precision,
        trained=trained,
        progress=progress,
        log_every=S.log_interval(cfg, acc.device),
        parking=parking,
    )


def _loop(ctx: Context) -> str:
    """The step loop: step → events → validation and samples → checkpoint → stop?"""
    st = ctx.state
    begin(ctx)
    t_start = time.time()
    done_epochs = completed_epochs(st.pos, ctx.batches.stream.batches_per_epoch)
    while st.step < ctx.max_steps:
        t0 = time.perf_counter()
        ctx.meter.add(train_step(ctx))
        st.step += 1
        st.pos = D.Position(**vars(ctx.batches.pos))
        record_step(ctx, t0)
        if every(ctx.cfg.train.val_every_n_steps, st.step) and ctx.dataset.val_items:
            record_validation(ctx)
        now_epochs = completed_epochs(st.pos, ctx.batches.stream.batches_per_epoch)
        epoch_save = now_epochs > done_epochs and every(ctx.cfg.save.every_n_epochs, now_epochs)
        done_epochs = now_epochs
        saves = every(ctx.cfg.save.every_n_steps, st.step) or epoch_save
        if every(ctx.cfg.sample.every_n_steps, st.step) and ctx.cfg.sample.prompts:
            sample_images(ctx, st.step, saved=saves)
        if saves:
            st.elapsed += time.time() - t_start
            t_start = time.time()
            save_checkpoint(ctx)
        if st.step < ctx.max_steps and stop_requested(ctx):
            st.elapsed += time.time() - t_start
            return stop_here(ctx)
    st.elapsed += time.time() - t_start
    return finish(ctx)


def begin(ctx: Context) -> None:
    """Announce the run (and what a resume redoes), start the trackers, draw the step-0 samples."""
    st = ctx.state
    extra: dict[str, Any] = {}
    if ctx.resumed_from is not None:
        extra["resumed_from"] = ctx.resumed_from
    ctx.events.status("running", max_steps=ctx.max_steps, step=st.step, **extra)
    if ctx.cfg.train.log_with and ctx.acc.is_main_process:
        ctx.trackers = trackers.start_trackers(ctx.cfg.train.log_with, ctx.run, ctx.cfg.model_dump(mode="json"))
    if ctx.cfg.sample.at_start and st.step == 0 and ctx.cfg.sample.prompts:
        sample_images(ctx, 0)
    train_mode(ctx)


def record_step(ctx: Context, t0: float) -> None:
    """Every ``log_every`` steps (and the last): read the mean loss since the last event off the
    device (the only host sync of a step), stop on a NaN, write the step event, the progress line,
    the trackers. ``t0``: when this step began (the speed counts the wait for the device too)."""
    st = ctx.state
    logged = st.step % ctx.log_every == 0 or st.step == ctx.max_steps
    if not logged:
        ctx.rate.add(time.perf_counter() - t0)
        return
    reduce = (lambda t: ctx.acc.reduce(t, reduction="mean")) if ctx.acc.num_processes > 1 else None
    loss = ctx.meter.take(reduce)
    it_s = ctx.rate.add(time.perf_counter() - t0)
    if not math.isfinite(loss):
        raise TrainingError(f"loss is {loss} at step {st.step}", hint=NAN_HINT)
    ctx.loss_ema = loss if ctx.loss_ema is None else EMA_WEIGHT * ctx.loss_ema + (1 - EMA_WEIGHT) * loss
    fields = step_fields(ctx, loss, it_s)
    ctx.events.step(**fields)
    if ctx.progress:
        ctx.progress(fields)
    lrs = ctx.lr_scheduler.get_last_lr()
    scalars = {"loss/current": loss, "loss/average": ctx.loss_ema, "lr/unet": lrs[0], "speed/it_s": it_s}
    if len(lrs) > 1:
        scalars["lr/textencoder"] = lrs[1]
    trackers.log_scalars(ctx.trackers, scalars, st.step)


def record_validation(ctx: Context) -> None:
    val = validation_loss(ctx)
    ctx.events.emit("val", step=ctx.state.step, val_loss=val)
    trackers.log_scalars(ctx.trackers, {"loss/validation": val}, ctx.state.step)
    ctx.log.info("step %d: validation loss %.5f", ctx.state.step, val)


def stop_requested(ctx: Context) -> bool:
    """Rank 0 decides (stop.request, SIGTERM, Ctrl-C) and tells the others, so all stop after the same step."""
    wanted = ctx.stop.requested() if ctx.acc.is_main_process else False
    if ctx.acc.num_processes > 1:
        from accelerate.utils import broadcast

        flag = torch.tensor([1 if wanted else 0], device=ctx.acc.device)
        wanted = bool(broadcast(flag, from_process=0).item())
    return wanted


def stop_here(ctx: Context) -> str:
    st = ctx.state
    save_checkpoint(ctx)
    trackers.finish_trackers(ctx.trackers)
    ctx.events.status("stopped", step=st.step, max_steps=ctx.max_steps)
    ctx.log.info("stopped at step %d; `lorawb resume %s` continues", st.step, ctx.run.id)
    return "stopped"


def finish(ctx: Context) -> str:
    st, cfg = ctx.state, ctx.cfg
    if cfg.sample.prompts and not every(cfg.sample.every_n_steps, st.step):
        sample_images(ctx, st.step, saved=True)
    save_checkpoint(ctx)
    trackers.finish_trackers(ctx.trackers)
    ctx.events.status("finished", step=st.step, max_steps=ctx.max_steps)
    ctx.log.info("finished %d steps in %.1f s", st.step, st.elapsed)
    return "finished"


def train_mode(ctx: Context, on: bool = True) -> None:
    """Switch dropout on or off in the trained networks (walking the module tree costs ms: not per step)."""
    ctx.model.denoiser.train(on)
    for te in ctx.model.text_encoders:
        te.train(on and ctx.cfg.network.train_text_encoder)


def every(n: int, step: int) -> bool:
    return n > 0 and step > 0 and step % n == 0


def completed_epochs(pos: D.Position, batches_per_epoch: int) -> int:
    return pos.epoch + (1 if pos.index >= batches_per_epoch else 0)


# --- one step -------------------------------------------------------------------------------------


def train_step(ctx: Context) -> torch.Tensor:
    """One optimizer step over ``grad_accum`` micro-batches; returns this process's mean loss, on the
    device (reading it would wait for the device: ``record_step`` does, every ``log_every`` steps)."""
    cfg, acc = ctx.cfg, ctx.acc
    ga = cfg.train.grad_accum
    total: torch.Tensor | None = None
    for micro in range(ga):
        batch = ctx.batches.next()
        sync = micro == ga - 1 or acc.num_processes == 1
        with contextlib.ExitStack() as no_sync:
            if not sync:  # accumulate locally; all-reduce the gradients once, on the last micro-batch
                for module in ctx.trained:
                    no_sync.enter_context(acc.no_sync(module))
            loss = diffusion_loss(ctx, batch)
            acc.backward(loss / ga)
        total = loss.detach() if total is None else total + loss.detach()
    if cfg.train.max_grad_norm > 0:
        acc.clip_grad_norm_(ctx.params, cfg.train.max_grad_norm)
    ctx.optimizer.step()
    ctx.lr_scheduler.step()
    ctx.optimizer.zero_grad(set_to_none=True)
    assert total is not None
    return total / ga


def diffusion_loss(ctx: Context, batch: Batch, fractions: torch.Tensor | None = None) -> torch.Tensor:
    """The training loss of one micro-batch: the family's noising, target and denoiser call
    (lorawb.families), per-image MSE, the family's timestep weighting (min-SNR, flow weighting)
    and the images' own weights. ``fractions``: fixed timesteps in [0, 1] (the validation loss).

    With output preservation on (``batch.preserve``) the loss also has the preservation term
    (``preserved_loss``), computed in the same forward pass.
    """
    noised = ctx.model.noised(batch.latents, batch.generator, ctx.cfg.train, fractions)
    if batch.preserve is not None:
        return preserved_loss(ctx, batch, noised)
    pred = ctx.model.predict(noised.noisy, noised.timesteps, batch.text, batch.time_ids)
    return denoising_loss(ctx, pred, noised, batch.weights)


def denoising_loss(ctx: Context, pred: torch.Tensor, noised: Noised, weights: torch.Tensor | None) -> torch.Tensor:
    """MSE per image, weighted by timestep (the family's scheme) and by image (kohya: reg images
    prior_loss_weight), mean."""
    loss = per_image_mse(pred, noised.target)
    weight = ctx.model.loss_weights(noised.timesteps, ctx.cfg.train)
    if weight is not None:
        loss = loss * weight
    if weights is not None:
        loss = loss * weights
    return loss.mean()


def per_image_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=tuple(range(1, pred.dim())))


def preserved_loss(ctx: Context, batch: Batch, noised: Noised) -> torch.Tensor:
    """Output preservation (ai-toolkit's differential output preservation), batched.

    The base model's prediction on the class prompt (the trigger replaced by the class word) is
    computed with the LoRA off and no grad; then one forward pass with the LoRA on predicts both
    halves, the captions and the class prompts, on the same noisy latents. The class half is
    trained toward the base prediction, so the LoRA learns the character without changing what
    the class word draws. Cost: one extra no-grad forward; one backward, one optimizer step.
    """
    assert batch.preserve is not None and batch.preserve_mask is not None
    from lorawb.train.lora import adapters_off

    model, noisy, timesteps = ctx.model, noised.noisy, noised.timesteps
    with torch.no_grad(), adapters_off(ctx.lora_layers):
        prior = model.predict(noisy, timesteps, batch.preserve, batch.time_ids)
    both = TextCond.cat([batch.text.to(noisy.device), batch.preserve.to(noisy.device)])
    pred = model.predict(
        torch.cat([noisy, noisy]), torch.cat([timesteps, timesteps]), both, batch.time_ids.repeat(2, 1)
    )
    pred, pred_class = pred.chunk(2)
    loss = denoising_loss(ctx, pred, noised, batch.weights)
    pres = per_image_mse(pred_class, prior)
    return loss + ctx.cfg.train.preservation_weight * (pres * batch.preserve_mask).mean()


# --- setup ----------------------------------------------------------------------------------------


def make_accelerator(cfg: TrainConfig, log: logging.Logger | None = None) -> tuple[Any, str]:
    """The Accelerator, and the mixed precision it really uses.

    bf16 autocast works on CPU too; fp16 needs a GPU (on CPU it falls back to fp32, and says so).
    """
    from accelerate import Accelerator

    want_cuda = cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but no CUDA GPU is visible", hint="set train.device = 'auto'")
    mp = cfg.train.mixed_precision
    if mp == "fp16" and not want_cuda:
        mp = "no"
        if log:
            log.warning("train.mixed_precision 'fp16' needs a GPU: training in fp32 (bf16 works on CPU)")
    # Accelerate keeps process-wide state; a second run in this process (tests, the bench, an app
    # that trains in-process) may want other settings. Never reset a live process group.
    from accelerate.state import AcceleratorState, GradientState

    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    AcceleratorState._reset_state(reset_partial_state=not distributed)
    GradientState._reset_state()
    return Accelerator(cpu=not want_cuda, mixed_precision=mp), mp


def load_data(cfg: TrainConfig, log: logging.Logger, events: Any = None) -> D.DatasetInfo:
    """The dataset as the project's index sees it; unreadable images are skipped and named (log and events)."""
    dataset = D.load_dataset(cfg.dataset, cfg.train.seed)
    if dataset.reg_items:
        log.info(
            "%d reg images (%d with repeats) from %s, balanced to %d per epoch, prior_loss_weight %g",
            len(dataset.reg_items),
            dataset.num_reg_images,
            dataset.reg_root,
            sum(it.repeats for it in dataset.reg_items),
            cfg.dataset.prior_loss_weight,
        )
    if cfg.train.preservation == "output":
        log.info(
            "output preservation: class %r, weight %g", cfg.train.preservation_class, cfg.train.preservation_weight
        )
    for path, why in dataset.skipped:
        log.warning("skipped %s: %s", path, why)
    if dataset.skipped and events is not None:  # the Train tab names them too, as the doctor and Triage do
        events.emit("skipped", images=[{"path": _shown(path, cfg), "reason": why} for path, why in dataset.skipped])
    log.info(
        "%d images (%d with repeats), %d for validation, buckets %s",
        len(dataset.items),
        dataset.num_images,
        len(dataset.val_items),
        D.describe_buckets(dataset.items),
    )
    return dataset


def record_dataset(run: RunFolder, cfg: TrainConfig, dataset: D.DatasetInfo, keep: bool = False) -> None:
    """runs/<id>/dataset.json: every training image with the hash of its bytes and its caption and its
    repeats (lorawb.core.run_dataset), so `lorawb compare` names the files added, removed or
    re-captioned between two runs. Written when the run starts; a resumed run keeps the one it began with."""
    import json

    from lorawb.core.fsutil import atomic_write_text
    from lorawb.core.run_dataset import MANIFEST, manifest

    path = run.path / MANIFEST
    if keep and path.is_file():
        return
    root = Path(cfg.dataset.path)
    rows = []
    for it in dataset.items + dataset.val_items:
        if it.is_reg or not it.content_hash:
            continue
        try:
            rel = it.path.relative_to(root).as_posix()
        except ValueError:
            rel = it.path.as_posix()
        rows.append((rel, it.content_hash, it.caption_text, it.repeats))
    atomic_write_text(path, json.dumps(manifest(rows), indent=1) + "\n")


def warn_setup(cfg: TrainConfig, model: Model, dataset: D.DatasetInfo, log: logging.Logger, events: Any) -> None:
    """Warn (log and a ``warning`` event) of a resolution far from the model's, with the time a step
    is estimated to take, and of differently shaped images that all land in one bucket."""
    from lorawb.core.buckets import one_bucket_warning
    from lorawb.train.modelpath import recommend, resolution_warning

    rec = recommend(cfg.model.path, cfg.model.config)
    text = resolution_warning(cfg.dataset.resolution, rec)
    if text and rec is not None:
        estimate = estimate_step_seconds(model, cfg, rec.resolution)
        fields: dict[str, Any] = {"kind": "resolution", "recommended": rec.resolution}
        if estimate is not None:
            native, at_res = estimate
            text += f"; a step is estimated at {at_res:.3g} s here, {native:.3g} s at {rec.resolution} px"
            fields["estimate_s"] = round(at_res, 3)
        log.warning("%s", text)
        events.emit("warning", text=text, **fields)
    if cfg.dataset.buckets:
        one = one_bucket_warning([(it.width, it.height) for it in dataset.items], [it.bucket for it in dataset.items])
        if one:
            log.warning("%s", one)
            events.emit("warning", text=one, kind="buckets")


def estimate_step_seconds(model: Model, cfg: TrainConfig, native: int) -> tuple[float, float] | None:
    """(seconds per step at the model's own resolution, estimated at the configured one).

    Measured: one denoiser forward pass over a batch at ``native`` px (a step is about three: forward
    and backward), scaled by the pixel ratio, a lower bound (attention grows faster). None if it cannot run.
    """
    if model.big is not None and not model.big.placed:
        return None  # the denoiser waits on the CPU until the caches are filled
    try:
        b = cfg.train.batch_size
        side = max(1, native // model.vae_scale)
        p = next(model.denoiser.parameters())
        latents = torch.randn(b, model.latent_channels, side, side, device=p.device, dtype=torch.float32)
        with torch.no_grad():
            text = model.encode_text(model.tokenize([""] * b))
            geometry = torch.tensor([(native, native, 0, 0, native, native)] * b, dtype=torch.float32)
            noised = model.noised(latents, torch.Generator(device=p.device).manual_seed(0), cfg.train)
            t0 = time.perf_counter()
            model.predict(noised.noisy, noised.timesteps, text, geometry)
            forward = time.perf_counter() - t0
    except Exception:  # an estimate only: a model this cannot drive gets the warning without it
        return None
    step = 3 * forward
    return step, step * (cfg.dataset.resolution / native) ** 2


def setup_network(cfg: TrainConfig, model: Model, log: logging.Logger, init_from: bool = True) -> LoraSetup:
    """Inject the LoRA (seeded), start it from ``network.init_from`` if set, turn on gradient checkpointing."""
    torch.manual_seed(cfg.train.seed)  # LoRA initialisation
    lora = add_lora(
        model.denoiser,
        model.text_encoders,
        cfg.network,
        model.unused_text_layers(),
        family=model.spec,
        trainable=model.spec.trainable_text_encoders,
        targets=model.lora_targets(cfg.network),
    )
    log.info("LoRA on %d denoiser layers, %d trainable parameters", len(lora.unet_modules), lora.num_params)
    bigmodel.install_offload(model)  # before checkpointing wraps the blocks: recomputing brings them in
    if init_from and cfg.network.init_from:
        report = init_from_file(model, Path(cfg.network.init_from), cfg.network)
        log.info("started from %s: %d layers loaded", cfg.network.init_from, report.loaded)
        if report.missing:
            log.warning("%d layers of this network are not in that file (they start from zero)", len(report.missing))
        if report.ignored:
            log.warning("%d layers of that file are not in this network (left out)", len(report.ignored))
    if cfg.train.gradient_checkpointing:
        model.enable_gradient_checkpointing()
        if cfg.network.train_text_encoder:
            for te in trained_text_encoders(model):
                enable_checkpointing(te)
    return lora


def enable_checkpointing(text_encoder: Any) -> None:
    """Non-reentrant checkpointing: with the reentrant kind, adapters injected by peft get no gradient
    (transformers only makes the inputs require grad for its own adapter API)."""
    kwargs = {"use_reentrant": False}
    if hasattr(text_encoder, "activation_checkpointing_enable"):  # transformers >= 5.x
        text_encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        text_encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def trained_text_encoders(model: Model) -> list[Any]:
    """The text encoders a text-encoder LoRA trains (the family says which: Flux's CLIP, not its T5)."""
    return [te for te, ok in zip(model.text_encoders, model.spec.trainable_text_encoders, strict=False) if ok]


def prepare(acc: Any, model: Model, cfg: TrainConfig, optimizer: Any) -> tuple[list[Any], Any]:
    """Hand Accelerate every module that trains (so each one's gradients are all-reduced), and the optimizer."""
    tes = trained_text_encoders(model) if cfg.network.train_text_encoder else []
    *prepared, optimizer = acc.prepare(model.denoiser, *tes, optimizer)
    model.denoiser = prepared[0]
    wrapped = dict(zip(map(id, tes), prepared[1:], strict=True))
    model.text_encoders = [wrapped.get(id(te), te) for te in model.text_encoders]
    return prepared, optimizer


def quiet_libraries() -> None:
    """diffusers/transformers progress bars and advice would drown the log; errors still show."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def setup_torch(cfg: TrainConfig, device: torch.device) -> None:
    threads = cfg.train.threads or int(os.environ.get("LORAWB_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def weight_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype:
    """Frozen weights are stored in the mixed-precision type on GPU (the LoRA stays fp32); CPU keeps fp32 weights."""
    if device.type != "cuda":
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.train.mixed_precision, torch.float32)


def make_optimizer(cfg: TrainConfig, lora: LoraSetup, device: torch.device | None = None) -> torch.optim.Optimizer:
    t = cfg.train
    groups = [{"params": lora.unet_params, "lr": t.learning_rate}]
    if lora.te_params:
        groups.append({"params": lora.te_params, "lr": cfg.network.text_encoder_lr or t.learning_rate})
    if t.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb  # optional: only for 8-bit AdamW
        except ImportError as exc:
            raise TrainingError(
                "train.optimizer 'adamw8bit' needs bitsandbytes", hint="pip install bitsandbytes, or use 'adamw'"
            ) from exc
        return bnb.optim.AdamW8bit(groups, lr=t.learning_rate, weight_decay=t.weight_decay)
    fused = S.use_fused_adamw(cfg, device or torch.device("cpu"))
    return torch.optim.AdamW(groups, lr=t.learning_rate, weight_decay=t.weight_decay, fused=fused)


def speed_levers(
    cfg: TrainConfig, model: Model, batches: Batches, device: torch.device, log: logging.Logger
) -> S.Parking:
    """channels-last and torch.compile when asked for; the networks the caches make idle parked off the GPU."""
    if cfg.train.channels_last:
        S.to_channels_last(model.denoiser)
    if cfg.train.compile:
        S.compile_unet(model.denoiser, device, log)
    parking = S.Parking(
        model,
        device,
        text_cached=batches.text is not None and cfg.train.offload_frozen,
        latents_cached=batches.latents is not None and cfg.train.offload_frozen,
    )
    parked = parking.park()
    if parked:
        log.info(
            "%s parked on the CPU: the caches cover every step (back on the GPU for samples)", " and ".join(parked)
        )
    return parking


def make_lr_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, max_steps: int) -> Any:
    from diffusers.optimization import get_scheduler

    name = cfg.train.lr_scheduler
    if name == "constant" and cfg.train.warmup_steps:
        name = "constant_with_warmup"
    return get_scheduler(name, optimizer, num_warmup_steps=cfg.train.warmup_steps, num_training_steps=max_steps)


# --- events, validation, samples, checkpoints -----------------------------------------------------

EMA_WEIGHT = 0.9  # of the smoothed loss the trackers get (the monitor's default smoothing)


class Rate:
    """Training steps per second over the last few steps (sampling and saving time not counted)."""

    def __init__(self, window: int = 20) -> None:
        self.durations: list[float] = []
        self.window = window

    def add(self, seconds: float) -> float:
        self.durations = (self.durations + [seconds])[-self.window :]
        return len(self.durations) / max(1e-9, sum(self.durations))


def step_fields(ctx: Context, loss: float, it_s: float) -> dict[str, Any]:
    st = ctx.state
    fields: dict[str, Any] = {
        "step": st.step,
        "epoch": st.pos.epoch + 1,
        "loss": round(loss, 6),
        "lr": ctx.lr_scheduler.get_last_lr()[0],
        "it_s": round(it_s, 4),
        "max_steps": ctx.max_steps,
    }
    if ctx.acc.device.type == "cuda":
        fields["mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return fields


def needs_frozen_networks(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For a phase that runs the text encoders or the VAE: the parked ones come back to the device for it."""
    import functools

    @functools.wraps(fn)
    def wrapper(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        with ctx.parking.unparked() if ctx.parking else contextlib.nullcontext():
            return fn(ctx, *args, **kwargs)

    return wrapper


@needs_frozen_networks
@torch.no_grad()
def validation_loss(ctx: Context, timesteps: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)) -> float:
    """Loss on held-out images at fixed timesteps and fixed noise: comparable from step to step."""
    cfg, model = ctx.cfg, ctx.model
    train_mode(ctx, False)
    items = ctx.dataset.val_items
    if ctx.val_cache is None:
        ctx.val_cache = LatentCache(cache_root(ctx.run) / "latents", model, "center")
        ctx.val_cache.fill(items)
    cache = ctx.val_cache
    losses = []
    for i, item in enumerate(items):
        mean, _ = cache.get(i, False)
        latents = model.scale_latents(mean[None].to(ctx.batches.device))
        caption = ctx.batches.caption_for(item.caption)
        text = model.encode_text(model.tokenize([caption]))
        top, left = center_crop(item)
        time_ids = torch.tensor(
            [(item.height, item.width, top, left, item.bucket[1], item.bucket[0])], dtype=torch.float32
        )
        for t in timesteps:
            g = torch.Generator(device=latents.device).manual_seed(seed_for("val", cfg.train.seed, i, t))
            at = torch.tensor([t], dtype=torch.float64)
            losses.append(diffusion_loss(ctx, Batch(latents, text, time_ids, g), fractions=at).item())
    train_mode(ctx)
    return float(sum(losses) / max(1, len(losses)))


def sample_prompts(cfg: TrainConfig) -> list[str]:
    """The sample prompts, ``{trigger}`` filled; a joint run draws a ``{trigger}`` prompt once per
    character and once per pair (the pair template, ``{context}`` the prompt's other words)."""
    from lorawb.core.characters import pairs_of
    from lorawb.train.data import run_characters

    ds = cfg.dataset
    if not ds.characters:
        return [p.replace("{trigger}", ds.trigger) for p in cfg.sample.prompts]
    chars = run_characters(ds)
    out: list[str] = []
    for p in cfg.sample.prompts:
        if "{trigger}" not in p:
            out.append(p)
            continue
        out += [p.replace("{trigger}", c.trigger) for c in chars]
        context = ", ".join(t.strip() for t in p.replace("{trigger}", "").split(",") if t.strip())
        for a, b in pairs_of(chars):
            pair = ds.pair_template.replace("{a}", a.trigger).replace("{b}", b.trigger).replace("{context}", context)
            out.append(", ".join(t.strip() for t in pair.split(",") if t.strip()))
    return list(dict.fromkeys(out))


def guidance_scale(cfg: TrainConfig, model: Model) -> float:
    if cfg.sample.cfg > 0:
        return cfg.sample.cfg
    return model.default_cfg


@needs_frozen_networks
@torch.no_grad()
def sample_images(ctx: Context, step: int, saved: bool = False) -> list[Path]:
    """Draw every sample prompt at every seed; save PNGs (carrying their parameters, as matrix cells
    do) and the step's contact sheet to samples/, and announce them. ``saved``: this step saves a
    checkpoint (the samples name it: it holds the LoRA they were drawn with)."""
    import numpy as np

    from lorawb.core.fsutil import atomic_write_bytes
    from lorawb.core.pngtext import png_bytes
    from lorawb.train.samples import sample_record, write_sample_sheet

    if not ctx.acc.is_main_process:
        return []
    cfg, model = ctx.cfg, ctx.model
    train_mode(ctx, False)
    res = cfg.dataset.resolution
    width = cfg.sample.width or model.recommended.get("width") or res
    height = cfg.sample.height or model.recommended.get("height") or res
    unit = model.size_step
    width, height = max(unit, width // unit * unit), max(unit, height // unit * unit)
    pipe = model.pipeline(model.sampler(cfg.sample.scheduler), denoiser=ctx.denoiser, text_encoders=ctx.text_encoders)
    pipe.set_progress_bar_config(disable=True)
    scale = guidance_scale(cfg, model)
    checkpoint = checkpoint_path(ctx, step) if saved else None
    out: list[Path] = []
    records: list[dict[str, Any]] = []
    images: dict[str, Any] = {}
    n = 0
    autocast = torch.autocast(ctx.acc.device.type, dtype=ctx.dtype, enabled=ctx.dtype != torch.float32)
    for prompt in sample_prompts(cfg):
        for seed in cfg.sample.seeds:
            g = torch.Generator(device=ctx.acc.device).manual_seed(seed)
            with autocast:
                image = model.draw(
                    pipe,
                    prompt=prompt,
                    negative_prompt=cfg.sample.negative or None,
                    num_inference_steps=cfg.sample.steps,
                    guidance_scale=scale,
                    width=width,
                    height=height,
                    generator=g,
                )[0]
            rel = f"samples/{step:06d}-{n}.png"
            record = sample_record(
                run_id=ctx.run.id,
                step=step,
                index=n,
                checkpoint=checkpoint,
                base=str(model.source),
                prompt=prompt,
                negative=cfg.sample.negative,
                seed=seed,
                cfg=scale,
                steps=cfg.sample.steps,
                sampler=cfg.sample.scheduler,
                width=width,
                height=height,
                family=model.family,
            )
            atomic_write_bytes(ctx.run.path / rel, png_bytes(image, record))
            ctx.events.sample(step=step, prompt=prompt, path=rel, seed=seed, index=n, cfg=scale)
            out.append(ctx.run.path / rel)
            records.append(record)
            images[f"samples/{n}"] = np.asarray(image.convert("RGB"))
            n += 1
    if out:
        sheet = write_sample_sheet(ctx.run.path, ctx.run.id, step, records, out, str(model.source))
        ctx.events.emit("sheet", step=step, path=sheet.relative_to(ctx.run.path).as_posix())
    trackers.log_images(ctx.trackers, images, step)
    ctx.log.info("step %d: %d samples", step, n)
    train_mode(ctx)
    return out


def checkpoint_path(ctx: Context, step: int) -> Path:
    """checkpoints/<save.name>-<step>.safetensors: where the checkpoint of ``step`` is saved."""
    return ctx.run.checkpoints / f"{ctx.cfg.save.name}-{step:06d}.safetensors"


def save_checkpoint(ctx: Context) -> Path | None:
    """checkpoints/<name>-<step>.safetensors (kohya format) and the resume state beside it.

    Every rank logs a fingerprint of its LoRA weights (data-parallel ranks must agree); the main
    process writes. The resume state replaces the previous one atomically, so a run killed at any
    moment resumes from its last checkpoint.
    """
    st = ctx.state
    check_ranks_agree(ctx)
    if not ctx.acc.is_main_process:
        return None
    cfg, model = ctx.cfg, ctx.model
    path = checkpoint_path(ctx, st.step)
    name = path.name
    fresh = not path.exists() or path not in ctx.checkpoints
    if fresh:
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[cfg.save.precision]
        te_layers = [kohya.extract_lora(te) for te in ctx.text_encoders] if cfg.network.train_text_encoder else None
        tensors = model.lora_tensors(kohya.extract_lora(ctx.denoiser), te_layers, dtype)
        kohya.save_lora(path, tensors, checkpoint_metadata(ctx))
        ctx.checkpoints.append(path)
        ctx.log.info("step %d: saved %s", st.step, path.name)
    save_resume(ctx)
    if fresh:
        # Announced once the resume state is on disk too: `resumable` means both are there.
        ctx.events.checkpoint(step=st.step, path=f"checkpoints/{name}", epoch=st.pos.epoch + 1, resumable=True)
        prune_checkpoints(ctx)
    return path


def weights_fingerprint(ctx: Context) -> str:
    """A short hash of every trainable LoRA weight, exactly (two ranks that agree have equal weights)."""
    import hashlib

    h = hashlib.sha1()
    for name, tensor in sorted(trainable_state(ctx.denoiser, ctx.text_encoders).items()):
        h.update(name.encode())
        h.update(tensor.float().numpy().tobytes())
    return h.hexdigest()[:16]


def check_ranks_agree(ctx: Context) -> None:
    """Log this rank's weight fingerprint; under several processes, warn if they have drifted apart."""
    fingerprint = weights_fingerprint(ctx)
    ctx.log.info("step %d: LoRA weights fingerprint %s", ctx.state.step, fingerprint)
    if ctx.acc.num_processes > 1:
        from accelerate.utils import gather_object

        every_rank = gather_object([fingerprint])
        if len(set(every_rank)) > 1:
            ctx.log.warning("step %d: the processes' LoRA weights differ: %s", ctx.state.step, every_rank)


def prune_checkpoints(ctx: Context) -> None:
    keep = ctx.cfg.save.keep_last
    if keep <= 0:
        return
    while len(ctx.checkpoints) > keep:
        old = ctx.checkpoints.pop(0)
        with contextlib.suppress(OSError):
            old.unlink()


def network_module(net: Any, kohya_module: str = "networks.lora") -> tuple[str, dict[str, Any]]:
    """(ss_network_module, ss_network_args) as the trainer that makes such a network writes them.

    Plain LoRA and LoCon (conv_dim) are kohya's own network for the family (``kohya_module``:
    ``networks.lora``, ``networks.lora_flux``...); DoRA exists only in LyCORIS (``lycoris.kohya``,
    algo lora with ``dora_wd``).
    """
    args: dict[str, Any] = {}
    if net.conv:
        args.update(conv_dim=str(net.conv_rank), conv_alpha=str(net.conv_alpha))
    if not net.dora:
        return kohya_module, args
    args = {"algo": "lora", "dora_wd": "True", **args}
    if net.dropout:
        args["dropout"] = str(net.dropout)
    return "lycoris.kohya", args


def checkpoint_metadata(ctx: Context) -> dict[str, Any]:
    cfg, st = ctx.cfg, ctx.state
    net = cfg.network
    module, args = network_module(net, ctx.model.spec.kohya_network)
    meta = kohya.training_metadata(
        family_metadata=ctx.model.spec.lora_metadata(),
        output_name=cfg.save.name,
        base_model=str(ctx.model.source),
        trigger=cfg.dataset.trigger,
        tag_frequency=ctx.dataset.tag_frequency,
        dataset_dirs=ctx.dataset.dataset_dirs,
        num_train_images=ctx.dataset.num_images,
        rank=net.rank,
        alpha=net.alpha,
        resolution=cfg.dataset.resolution,
        step=st.step,
        max_steps=ctx.max_steps,
        epoch=st.pos.epoch + 1,
        epochs=ctx.num_epochs,
        learning_rate=cfg.train.learning_rate,
        text_encoder_lr=net.text_encoder_lr or None,
        train_text_encoder=net.train_text_encoder,
        batch_size=cfg.train.batch_size,
        optimizer=cfg.train.optimizer,
        lr_scheduler=cfg.train.lr_scheduler,
        noise_offset=cfg.train.noise_offset,
        min_snr_gamma=cfg.train.min_snr_gamma,
        seed=cfg.train.seed,
        mixed_precision=ctx.mixed_precision,
        started_at=st.started_at,
        finished_at=time.time(),
        network_module=module,
        extra_network_args=args,
        network_dropout=net.dropout,
        prediction_type=ctx.model.prediction_type,
        characters={c.name: c.trigger for c in cfg.dataset.characters} or None,
    )
    if net.init_from:
        meta["lorawb_init_from"] = Path(net.init_from).name
    meta.update(regularisation_metadata(ctx))
    return meta


def regularisation_metadata(ctx: Context) -> dict[str, Any]:
    """kohya's reg-image keys (``ss_reg_dataset_dirs``, ``ss_num_reg_images``, ``ss_prior_loss_weight``)
    and lorawb's output-preservation keys."""
    cfg, ds = ctx.cfg, ctx.dataset
    meta: dict[str, Any] = {
        "ss_num_reg_images": str(ds.num_reg_images),
        "ss_reg_dataset_dirs": ds.reg_dataset_dirs,
        "ss_prior_loss_weight": str(cfg.dataset.prior_loss_weight),
    }
    if cfg.train.preservation != "none":
        meta["lorawb_preservation"] = cfg.train.preservation
        meta["lorawb_preservation_class"] = cfg.train.preservation_class
        meta["lorawb_preservation_weight"] = str(cfg.train.preservation_weight)
    return meta


# --- resume state ---------------------------------------------------------------------------------


def save_resume(ctx: Context) -> None:
    """state/resume.pt: LoRA weights, optimizer, lr scheduler, RNG, step and data position, in one atomic write."""
    st = ctx.state
    payload = {
        "step": st.step,
        "epoch": st.pos.epoch,
        "index": st.pos.index,
        "elapsed": st.elapsed,
        "started_at": st.started_at,
        "lora": trainable_state(ctx.denoiser, ctx.text_encoders),
        "optimizer": ctx.optimizer.state_dict(),
        "lr_scheduler": ctx.lr_scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "scaler": ctx.acc.scaler.state_dict() if getattr(ctx.acc, "scaler", None) is not None else None,
        "checkpoints": [str(p) for p in ctx.checkpoints],
    }
    ctx.run.state.mkdir(parents=True, exist_ok=True)
    save_torch(ctx.run.state / "resume.pt", payload)  # the previous state stays until this one is complete


def resume_state(ctx: Context) -> None:
    """Restore the saved state into ``ctx`` and say where it resumes (and which steps it trains again)."""
    from lorawb.train.runfolder import summarize

    last_step = summarize(ctx.run).step  # the furthest step logged, perhaps past the last save (a killed run)
    ctx.state = load_resume(ctx.run, ctx.denoiser, ctx.text_encoders, ctx.optimizer, ctx.lr_scheduler, ctx.acc)
    st = ctx.state
    ctx.checkpoints = [Path(p) for p in st.checkpoints if Path(p).exists()]
    ctx.batches.seek(st.pos)
    ctx.resumed_from = st.step
    redo = f"; steps {st.step + 1}-{last_step} ran after it and are trained again" if last_step > st.step else ""
    ctx.log.info("resumed at step %d (epoch %d, batch %d)%s", st.step, st.pos.epoch, st.pos.index, redo)


def load_resume(
    run: RunFolder, unet: Any, text_encoders: list[Any], optimizer: Any, lr_scheduler: Any, acc: Any
) -> TrainState:
    from safetensors.torch import load_file

    from lorawb.train.modelpath import safetensors_header

    state_dir = run.state
    if not (state_dir / "resume.pt").is_file():
        raise RunError(
            "this run has no resume state (it stopped before saving one)",
            path=state_dir,
            hint="start a new run; resume state is saved with every checkpoint, at every stop and at the end",
        )
    payload = read_resume_payload(state_dir / "resume.pt")
    # Runs from before lorawb 0.2 kept the weights in a file of their own.
    weights = payload.get("lora")
    if not weights:
        safetensors_header(state_dir / "lora.safetensors")  # a pickle there is refused, not loaded
        weights = load_file(str(state_dir / "lora.safetensors"))
    load_trainable_state(unet, text_encoders, weights)
    optimizer.load_state_dict(payload["optimizer"])
    lr_scheduler.load_state_dict(payload["lr_scheduler"])
    torch.set_rng_state(payload["torch_rng"])
    if payload.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    if payload.get("scaler") and getattr(acc, "scaler", None) is not None:
        acc.scaler.load_state_dict(payload["scaler"])
    return TrainState(
        step=int(payload["step"]),
        pos=D.Position(int(payload["epoch"]), int(payload["index"])),
        elapsed=float(payload.get("elapsed", 0.0)),
        started_at=float(payload.get("started_at", time.time())),
        checkpoints=list(payload.get("checkpoints", [])),
    )


RESUME_KEYS = ("step", "epoch", "index", "optimizer", "lr_scheduler", "torch_rng")


def read_resume_payload(path: Path) -> dict[str, Any]:
    """state/resume.pt as ``save_resume`` wrote it, read with torch's weights-only unpickler (no code
    runs); anything else (a pickle with code in it, a torn or foreign file) is a RunError naming it."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many kinds (UnpicklingError, RuntimeError, EOFError...)
        raise RunError(
            f"cannot read the resume state ({type(exc).__name__}): it is not one lorawb wrote, or it is damaged; "
            "nothing in it was run",
            path=path,
            hint="start a new run (its checkpoints are still there: network.init_from can start from one)",
        ) from exc
    missing = [k for k in RESUME_KEYS if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise RunError(
            f"not a resume state lorawb wrote (no {', '.join(missing)})",
            path=path,
            hint="start a new run (its checkpoints are still there: network.init_from can start from one)",
        )
    return payload


# --- process plumbing: lock, log, stop flag, failure messages -------------------------------------


run_lock = hold_lock  # the run lock (lorawb.train.detached), taken over from the launcher


def run_log(run: RunFolder, rank: int = 0) -> contextlib.AbstractContextManager[logging.Logger]:
    """train.log in the run folder: the human log (appended across resumes)."""
    return job_log(run, "run", rank)


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(error, hint) for the failed status."""
    if isinstance(exc, torch.OutOfMemoryError):
        return "out of GPU memory", OOM_HINT
    if isinstance(exc, LorawbError):
        return exc.message if not exc.path else f"{exc.path}: {exc.message}", exc.hint or ""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "`lorawb resume` continues from the last saved state, if any"
    if isinstance(exc, MemoryError):
        return "out of memory", OOM_HINT
    return f"{type(exc).__name__}: {exc}", "see train.log in the run folder for the traceback"


class NullEvents:
    """The event writer of non-main processes: says nothing (rank 0 speaks for the run)."""

    def __enter__(self) -> NullEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None


def main_worker(run_dir: str | Path, resume: bool = False, lock_fd: int | None = None) -> int:
    """Entry point of a detached training process (see lorawb.train.worker)."""
    run = RunFolder(Path(run_dir).resolve())
    try:
        train(run, resume=resume, lock_fd=lock_fd)
    except LorawbError as exc:
        print(f"lorawb: {exc}", flush=True)
        return 2
    return 0


__all__ = ["train", "TrainingError", "main_worker", "load_run_config"]


def _shown(path: Path, cfg: TrainConfig) -> str:
    """A skipped image as the user knows it: relative to the dataset folder when it is inside it."""
    for base in (cfg.dataset.path, cfg.dataset.validation_path):
        if base:
            try:
                return Path(path).relative_to(base).as_posix()
            except ValueError:
                continue
    return str(path)
