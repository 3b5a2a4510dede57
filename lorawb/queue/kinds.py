"""What the queue can run: each kind is a detached worker command on a folder.

A kind names its worker module (``python -m MODULE FOLDER [--resume]``, the same command a
``--detach`` start runs, here or in a Slurm job), how to read the state its worker recorded
in the folder, the file whose presence means "resume" on a restart, and, for jobs whose
folder cannot exist before they start (a training run's folder is made when it starts; a
sweep's matrix needs its run's checkpoints), how to make the folder. Adding a kind is one
``register(Kind(...))`` line beside its command's ``--queue`` option.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorawb.queue.store import Job, Queue
from lorawb.train.detached import JobFolder


@dataclass(frozen=True)
class Kind:
    name: str
    worker: str  # the worker module: python -m WORKER FOLDER [--resume]
    folder_type: type[JobFolder]
    state: Callable[[Job, Path], tuple[str, str]]  # (state, error) the worker recorded in the folder
    resume_file: str = ""  # relative to the folder: when it exists a restart passes --resume
    prepare: Callable[[Job, Queue], Path] | None = None  # make the folder when the job starts
    adopt: Callable[[Job, Queue], Path | None] | None = None  # the folder a killed runner made but did not record

    def folder(self, job: Job) -> JobFolder:
        return self.folder_type(Path(job.folder))

    def worker_args(self, folder: Path) -> list[str]:
        """The worker's arguments after ``python -m WORKER`` (``--resume`` when there is state to resume)."""
        args = [str(folder)]
        if self.resume_file and (folder / self.resume_file).is_file():
            args.append("--resume")
        return args


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    KINDS[kind.name] = kind
    return kind


def kind_of(job: Job) -> Kind:
    from lorawb.queue.store import QueueError

    try:
        return KINDS[job.kind]
    except KeyError:
        raise QueueError(f"job {job.id}: unknown kind {job.kind!r} (a newer lorawb queued it?)") from None


# --- training runs ----------------------------------------------------------------------------------


def _train_state(job: Job, folder: Path) -> tuple[str, str]:
    from lorawb.train.runfolder import RunFolder, summarize

    s = summarize(RunFolder(folder))
    return s.state, s.error or ""


def _train_config_text(job: Job) -> str:
    from lorawb.train.config import load_run_config

    return load_run_config(Path(job.params["config"])).to_toml()


def _prepare_run(job: Job, queue: Queue) -> Path:
    """The run folder: made now from the config frozen when the job was queued."""
    from lorawb.core.project import Project
    from lorawb.train.config import load_run_config
    from lorawb.train.process import create_run

    config = load_run_config(Path(job.params["config"]))
    return create_run(Project.load(job.project), config, job.params.get("name", "")).path


def _adopt_run(job: Job, queue: Queue) -> Path | None:
    """A run folder made for ``job`` by a runner killed before it recorded it: made since the job
    started, with the job's config, no events, and no other job's."""
    from lorawb.core.project import Project

    runs = Project.load(job.project).runs_dir
    if not runs.is_dir() or job.started is None:
        return None
    want = _train_config_text(job)
    taken = {str(Path(j.folder).resolve()) for j in queue.jobs if j.folder}
    for path in sorted(runs.iterdir()):
        cfg = path / "config.toml"
        try:
            fresh = cfg.stat().st_mtime >= job.started - 1
        except OSError:
            continue
        if not fresh or str(path.resolve()) in taken:
            continue
        events = path / "events.jsonl"
        if events.exists() and events.stat().st_size:
            continue
        if cfg.read_text(encoding="utf-8") == want:
            return path
    return None


def _register_builtin() -> None:
    from lorawb.generate.job import GenerateJob
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.imagejob import WORKER_MODULE as IMAGE_JOB_WORKER
    from lorawb.matrix.reggen import RegJob
    from lorawb.train.runfolder import RunFolder

    register(
        Kind(
            "train",
            "lorawb.train.worker",
            RunFolder,
            _train_state,
            resume_file="state/resume.pt",
            prepare=_prepare_run,
            adopt=_adopt_run,
        )
    )
    register(Kind("matrix", "lorawb.matrix.worker", MatrixFolder, _matrix_state, prepare=_prepare_matrix))
    register(Kind("reg", IMAGE_JOB_WORKER, RegJob, last_status))
    register(Kind("generate", IMAGE_JOB_WORKER, GenerateJob, last_status))


def _matrix_state(job: Job, folder: Path) -> tuple[str, str]:
    from lorawb.matrix.folder import MatrixFolder, read_status

    st = read_status(MatrixFolder(folder))
    return st.state, st.error or ""


def _prepare_matrix(job: Job, queue: Queue) -> Path:
    """A sweep's matrix for the run its ``after`` job trained (the sweep's template, that run's checkpoints)."""
    from lorawb.sweep.plan import make_matrix

    run = queue.get(job.after)
    return make_matrix(job, Path(run.folder))


def last_status(job: Job, folder: Path) -> tuple[str, str]:
    """The state of the last ``status`` line in the folder's events.jsonl (every worker writes them)."""
    from lorawb.train.events import read_events

    path = folder / "events.jsonl"
    statuses = [e for e in read_events(path) if e.get("type") == "status"] if path.is_file() else []
    if not statuses:
        return "new", ""
    return str(statuses[-1].get("state", "")), str(statuses[-1].get("error") or "")


_register_builtin()
