"""Starting, stopping and resuming runs: the API the CLI and the Train tab call (no torch here).

A detached run is ``python -m lorawb.train.worker RUN_DIR`` in a new session
(it survives the app closing and the SSH connection dropping), its output in
``worker.out`` in the run folder, started by lorawb.train.detached (which takes
the run lock before starting the worker and hands it over, so the run counts as
alive from the moment ``start_run`` returns). With ``train.num_processes > 1``
the worker is started through ``accelerate launch`` for data-parallel training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb.core.confine import name_in
from lorawb.core.fsutil import atomic_write_text
from lorawb.errors import ConfigError, RunError
from lorawb.train import detached
from lorawb.train.config import TrainConfig, load_run_config
from lorawb.train.events import read_events
from lorawb.train.modelpath import TORCH_ZIP, check_model_path, safetensors_header
from lorawb.train.runfolder import RunFolder, new_run_id
from lorawb.train.trackers import check_available

if TYPE_CHECKING:
    from lorawb.core.project import Project

WORKER_OUT = "worker.out"
WORKER_MODULE = "lorawb.train.worker"


def create_run(project: Project, config: TrainConfig, name: str = "") -> RunFolder:
    """A new runs/<id>/ with the frozen config.toml (after checking the files it names and the trackers).

    ``name`` (``--name``) is a word for the run id: one plain name, never a path (``../x`` is refused)."""
    runs_dir = project.runs_dir
    if name:
        name_in(runs_dir, name, "--name")
    check_model_path(config.model)
    check_init_from(config)
    check_available(config.train.log_with)
    runs_dir.mkdir(parents=True, exist_ok=True)
    run = RunFolder(runs_dir / new_run_id(runs_dir, name or config.save.name)).create()
    atomic_write_text(run.config, config.to_toml())
    return run


def start_run(
    project: Project,
    config: TrainConfig,
    detach: bool,
    name: str = "",
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> RunFolder:
    """Create a run and train it: detached (returns at once) or in this process (returns when done)."""
    run = create_run(project, config, name)
    launch(run, detach=detach, progress=progress)
    return run


# Settings a run may change when it resumes: how the frozen base is held in memory, not what the
# LoRA learns (its optimizer state, data order and schedule stay valid).
RESUME_CHANGES = (
    "model.quantize",
    "train.offload_blocks",
    "train.gradient_checkpointing",
    "train.offload_frozen",
    "train.compile",
    "train.channels_last",
)


def resume_run(
    run: RunFolder,
    detach: bool,
    progress: Callable[[dict[str, Any]], None] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> RunFolder:
    """Continue a stopped (or failed, or killed) run from its saved resume state; ``overrides``
    (``--set KEY=VALUE``) change one memory setting first (``change_on_resume``)."""
    check_resumable(run)
    if overrides:
        change_on_resume(run, overrides)
    launch(run, detach=detach, resume=True, progress=progress)
    return run


def change_on_resume(run: RunFolder, overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """Rewrite the run's frozen config with ``overrides`` and record the change in its events
    (``config_change``: the step it applies from, each key with its old and new value).

    The one-change guard: one setting per resume, and only those in ``RESUME_CHANGES`` (the LoRA,
    optimizer, data order and schedule of the saved state must stay valid). Returns the changes.
    """
    from lorawb.core.fsutil import atomic_write_text
    from lorawb.train.config import config_diff
    from lorawb.train.events import EventWriter
    from lorawb.train.runfolder import summarize

    before = load_run_config(run.config)
    after = before.with_overrides(overrides)
    changes = config_diff(before, after)
    if not changes:
        return []
    wrong = [key for key, _, _ in changes if key not in RESUME_CHANGES]
    if wrong:
        raise ConfigError(
            f"--set {wrong[0]}: a resumed run keeps what it learns with; only how the base is held in memory "
            "can change",
            hint="on resume: " + ", ".join(RESUME_CHANGES) + "; start a new run to change the rest",
        )
    if len(changes) > 1:
        raise ConfigError(
            "--set: one change per resume ("
            + ", ".join(k for k, _, _ in changes)
            + "): one at a time shows what each does",
            hint="resume with the first; if it still does not fit, stop and resume with the next",
        )
    from lorawb.train.config import family_of

    family = family_of(after)
    if family is not None:
        family.check_config(after)
    step = summarize(run).resumable_step or 0
    atomic_write_text(run.config, after.to_toml())
    with EventWriter(run.events) as events:
        events.emit("config_change", step=step, changes=[{"key": k, "from": a, "to": b} for k, a, b in changes])
    return changes


def check_resumable(run: RunFolder) -> None:
    """Raise RunError unless ``run`` can be resumed (not running, has resume state, not finished, model there)."""
    if run.is_alive():
        raise RunError("this run is still running", path=run.path, hint=f"`lorawb stop {run.id}` first")
    resume = run.state / "resume.pt"
    if not resume.is_file():
        raise RunError(
            "this run has no resume state to continue from",
            path=run.path,
            hint="resume state is saved with every checkpoint (save.every_n_steps), at a stop and at the end; "
            "start a new run instead",
        )
    states = [e.get("state") for e in read_events(run.events) if e.get("type") == "status"]
    if states and states[-1] == "finished":
        raise RunError("this run has already finished", path=run.path, hint="start a new run to train further")
    with open(resume, "rb") as fh:
        if fh.read(len(TORCH_ZIP)) != TORCH_ZIP:  # what torch.save writes; a plain pickle can run code
            raise RunError(
                "not a resume state lorawb wrote (a pickle, or damaged): not opened, since a pickle can run code",
                path=resume,
                hint="start a new run (its checkpoints are still there: network.init_from can start from one)",
            )
    check_model_path(load_run_config(run.config).model)


def check_init_from(config: TrainConfig) -> None:
    """``network.init_from``, when set, is a .safetensors file whose header reads (a pickle is refused)."""
    path = config.network.init_from
    if not path:
        return
    if not Path(path).is_file():
        raise ConfigError(
            "network.init_from: LoRA file not found",
            path=Path(path),
            hint="point it at a .safetensors LoRA (lorawb's or kohya's), or set it to ''",
        )
    if Path(path).suffix.lower() != ".safetensors":
        raise ConfigError(
            f"network.init_from: not a .safetensors LoRA ({Path(path).suffix or 'no extension'}); pickle files "
            "(.pt, .ckpt, .bin) can run code when loaded",
            path=Path(path),
            hint="convert it to .safetensors",
        )
    safetensors_header(Path(path), "network.init_from")


def stop_run(run: RunFolder, wait: float = 0.0) -> bool:
    """Ask a running run to save and stop; with ``wait``, wait up to that many seconds. True when it has stopped."""
    return detached.wait_stopped(run, wait)


def launch(
    run: RunFolder, detach: bool, resume: bool = False, progress: Callable[[dict[str, Any]], None] | None = None
) -> None:
    config = load_run_config(run.config)
    if not detach:
        if config.train.num_processes > 1:
            raise RunError(
                "train.num_processes > 1 needs a detached run (it is launched through accelerate)",
                hint="add --detach, or set train.num_processes = 1",
            )
        from lorawb.train.trainer import train

        train(run, resume=resume, progress=progress)
        return
    detached.spawn(run, WORKER_MODULE, ["--resume"] if resume else [], config.train.num_processes, out=WORKER_OUT)


def worker_command(run: RunFolder, num_processes: int, resume: bool = False, lock_fd: int | None = None) -> list[str]:
    """The command line of the training process (through `accelerate launch` for several processes)."""
    args = [str(run.path)]
    if resume:
        args.append("--resume")
    if lock_fd is not None:
        args += ["--lock-fd", str(lock_fd)]
    return detached.worker_command(WORKER_MODULE, args, num_processes)


worker_env = detached.worker_env
