"""The machine's job queue: runs, matrices and reg images started one after another (or one per
GPU), here or on Slurm. The API the CLI (`lorawb queue`, `--queue` options, `lorawb sweep`) and
the Train tab call; no torch.

    store      queue.json under the user's state folder, changed under a lock, written atomically
    kinds      what can be queued: a detached worker command on a folder
    lanes      where local jobs run: the GPUs (CUDA_VISIBLE_DEVICES), or one CPU lane
    runner     the one process per machine that starts and follows the jobs
    slurm      sbatch / squeue / scancel, when [queue] executor = "slurm"
    rows       what a person reads: state, lane, progress, ETA
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lorawb.queue import store
from lorawb.queue.store import Job, QueueError

if TYPE_CHECKING:
    from lorawb.core.project import Project
    from lorawb.generate.job import GeneratePlan
    from lorawb.matrix.reggen import RegPlan
    from lorawb.train.config import TrainConfig

__all__ = [
    "Job",
    "QueueError",
    "cancel",
    "enqueue",
    "move",
    "queue_generate",
    "queue_reg",
    "queue_train",
    "set_paused",
    "stop_folder",
]


def enqueue(
    project: Project,
    kind: str,
    title: str,
    *,
    folder: Path | None = None,
    gpus: int = 1,
    params: dict | None = None,
    files: dict[str, str] | None = None,
    after: str = "",
    qdir: Path | None = None,
    start: bool = True,
) -> Job:
    """Add a job at the end of the queue (and start the runner unless ``start`` is False).

    ``folder``: the folder its worker writes, when it exists already (a matrix, a reg job);
    otherwise its kind makes it when the job starts. ``files``: texts saved in the job's own
    folder under the queue, their paths put in ``params`` by name (``config.toml`` → ``config``).
    """
    from lorawb.queue import slurm
    from lorawb.queue.kinds import KINDS
    from lorawb.queue.runner import ensure_runner
    from lorawb.queue.settings import queue_settings

    if kind not in KINDS:
        raise QueueError(f"{kind!r} cannot be queued", hint="queueable: " + ", ".join(KINDS))
    settings = queue_settings(project)
    if settings.executor == "slurm" and slurm.missing():
        raise QueueError(
            f'[queue] executor = "slurm", but {slurm.missing()}',
            path=project.config_path,
            hint='run lorawb on a machine with the Slurm client (a login node), or set executor = "local"',
        )
    params = dict(params or {})
    with store.locked(qdir) as q:
        if folder is not None:
            other = q.find_folder(folder)
            if other is not None and other.active:
                raise QueueError(
                    f"{folder} is already in the queue as job {other.id} ({other.state})",
                    hint=f"`lorawb queue cancel {other.id}` first",
                )
        job = Job(
            id=q.new_id(),
            kind=kind,
            project=str(project.root.resolve()),
            title=title,
            gpus=max(1, gpus),
            executor=settings.executor,
            folder=str(Path(folder).resolve()) if folder is not None else "",
            after=after,
            max_requeues=settings.max_requeues,
        )
        for name, text in (files or {}).items():
            from lorawb.core.fsutil import atomic_write_text

            path = store.job_dir(job, qdir) / name
            atomic_write_text(path, text)
            params[Path(name).stem] = str(path)
        job.params = params
        q.add(job)
    if start:
        ensure_runner(qdir)
    return job


def queue_train(
    project: Project, config: TrainConfig, name: str = "", *, params: dict | None = None, after: str = "", **kw
) -> Job:
    """A training run, queued: its config is frozen now; its run folder is made when it starts."""
    from lorawb.train.modelpath import check_model_path
    from lorawb.train.process import check_init_from
    from lorawb.train.trackers import check_available

    check_model_path(config.model)  # what create_run checks, said now rather than when it starts
    check_init_from(config)
    check_available(config.train.log_with)
    title = f"train {name or config.save.name} ({config.train.max_steps or config.train.epochs} "
    title += "steps)" if config.train.max_steps else "epochs)"
    return enqueue(
        project,
        "train",
        title,
        gpus=config.train.num_processes,
        params={"name": name, **(params or {})},
        files={"config.toml": config.to_toml()},
        after=after,
        **kw,
    )


def queue_reg(project: Project, plan: RegPlan, **kw) -> Job:
    """The project's reg image generation, queued (its plan written now, as `reg generate` does)."""
    from lorawb.matrix.imagejob import refuse_if_running
    from lorawb.matrix.reggen import RegJob, save_plan

    job = RegJob.of(project)
    refuse_if_running(job, "reg images")
    _not_queued_twice(job.path, "a reg generation", kw.get("qdir"))
    save_plan(job, plan)
    title = f"reg images of {plan.class_word} ({len(plan.missing())})"
    return enqueue(project, "reg", title, folder=job.path, **kw)


def queue_generate(project: Project, plan: GeneratePlan, **kw) -> Job:
    """The project's generate job, queued (its plan written now, as `lorawb generate` does)."""
    from lorawb.generate.job import GenerateJob, save_plan
    from lorawb.matrix.imagejob import refuse_if_running

    job = GenerateJob.of(project)
    refuse_if_running(job, "candidates")
    _not_queued_twice(job.path, "a generate job", kw.get("qdir"))
    save_plan(job, plan)
    title = f"generate {len(plan.missing())} candidates of {plan.trigger}"
    return enqueue(project, "generate", title, folder=job.path, **kw)


def _not_queued_twice(folder: Path, what: str, qdir: Path | None) -> None:
    other = store.load(qdir).find_folder(folder)
    if other is not None and other.active:
        raise QueueError(f"{what} is already in the queue as job {other.id}", hint="cancel it first")


def set_paused(paused: bool, qdir: Path | None = None) -> None:
    """A paused queue starts nothing new; the jobs running go on."""
    from lorawb.queue.runner import ensure_runner

    with store.locked(qdir) as q:
        q.paused = paused
    if not paused:
        ensure_runner(qdir)


def move(job_id: str, position: int, qdir: Path | None = None) -> int:
    with store.locked(qdir) as q:
        return q.move(job_id, position)


def cancel(job_id: str, qdir: Path | None = None) -> str:
    """Cancel a job: a queued one is taken out (with the jobs that follow it); a running one is asked
    to save and stop, and is not requeued. Returns what happened, in words."""
    with store.locked(qdir) as q:
        job = q.get(job_id)
        if job.state == "queued":
            ended = q.end(job, "cancelled", "cancelled")
            more = f" (and {len(ended) - 1} job(s) that follow it)" if len(ended) > 1 else ""
            return f"job {job.id} cancelled{more}"
        if not job.active:
            raise QueueError(f"job {job.id} has already ended ({job.state})")
        job.wanted = "cancel"
    _ask_to_stop(job)
    return f"job {job.id} is asked to save and stop; it will not be started again"


def stop_folder(folder: Path, qdir: Path | None = None) -> str | None:
    """`lorawb stop` on a queued job's folder: the job is marked stopped on purpose (not requeued),
    and its worker asked to save and stop (on Slurm: ``scancel --signal=TERM``). Returns what
    happened, or None when no queue job runs ``folder`` (the caller stops it the usual way)."""
    from lorawb.queue import slurm

    with store.locked(qdir) as q:
        job = q.find_folder(folder)
        if job is not None and job.state in ("starting", "running"):
            job.wanted = job.wanted or "stop"
        else:
            job = None
    if job is not None:
        _ask_to_stop(job)
        where = f" (Slurm job {job.slurm_id})" if job.slurm_id else ""
        return f"queue job {job.id}{where} asked to save and stop; the queue will not start it again"
    rec = slurm.record(Path(folder))  # a Slurm job that another machine's queue submitted
    if rec is None or slurm.missing():
        return None
    live = (slurm.states([rec["job_id"]]) or {}).get(rec["job_id"])
    if live is None:
        return None
    slurm.stop(rec["job_id"], running=live != "PENDING")
    return f"Slurm job {rec['job_id']} asked to save and stop (scancel --signal=TERM)"


def _ask_to_stop(job: Job) -> None:
    from lorawb.queue import slurm
    from lorawb.queue.kinds import kind_of
    from lorawb.train.detached import wait_stopped

    if job.executor == "slurm":
        if job.slurm_id:
            slurm.stop(job.slurm_id, running=job.slurm_state not in ("PENDING", ""))
        return
    folder = kind_of(job).folder(job) if job.folder else None
    if folder is not None and folder.is_alive():
        wait_stopped(folder, 0)
