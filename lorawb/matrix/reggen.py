"""`lorawb reg generate`: regularisation images drawn by the project's own base model.

kohya's regularisation images are the base model's pictures of the class alone ("woman"),
so training on them beside the character keeps the class as the base model draws it. This
draws them with the matrix generator (one model load, batches, each image's noise from its
own seed), in a detached job with progress, into ``reg/1_<class>/`` with a caption per image
(the prompt it was drawn from), which is what the trainer reads (``dataset.reg_path``).

The prompts vary over the project's ``[tags.groups]`` contexts and styles (``woman, forest,
watercolor``) unless a prompts file is given (one per line, ``{class}`` replaced). The job
lives in ``.lorawb/reg-generate/``: ``plan.json`` (what to draw), ``events.jsonl`` (status and
one ``image`` event per image), ``job.log``, the lock, the pid and a stop request. A rerun
draws only the images that are missing; a stop is honoured between batches.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lorawb.core.fsutil import atomic_write_bytes, atomic_write_text, read_text
from lorawb.core.project import STATE_DIR, Project
from lorawb.errors import ConfigError, LorawbError, RunError
from lorawb.train import detached
from lorawb.train.events import EventWriter, read_events

WORKER_MODULE = "lorawb.matrix.reg_worker"
ProgressFn = Callable[[dict[str, Any]], None]
BATCH = 8


class RegJob(detached.JobFolder):
    """The project's one regularisation-image job (``.lorawb/reg-generate/``)."""

    worker_name = "reg image generator"
    job_name = "reg generation"

    plan_file = property(lambda self: self.path / "plan.json")
    log = property(lambda self: self.path / "job.log")

    @classmethod
    def of(cls, project: Project) -> RegJob:
        return cls(project.root / STATE_DIR / "reg-generate")

    def busy_hint(self) -> str:
        return "wait for it to finish, or `lorawb reg stop` it first"


@dataclass
class RegPlan:
    """What to draw: ``count`` images of ``class_word``, image i from ``prompts[i % len]`` at seed ``seed + i``."""

    class_word: str
    count: int
    prompts: list[str]
    out_dir: str  # absolute: reg/1_<class>/
    model: dict[str, Any]  # the run config's [model] section
    width: int
    height: int
    steps: int = 20
    cfg: float = 0.0  # 0: the model's recommended guidance
    seed: int = 0
    negative: str = ""
    created: float = field(default_factory=time.time)

    def name(self, i: int) -> str:
        return f"reg_{i:05d}.png"

    def prompt(self, i: int) -> str:
        return self.prompts[i % len(self.prompts)]

    def missing(self) -> list[int]:
        out = Path(self.out_dir)
        return [i for i in range(self.count) if not (out / self.name(i)).exists()]


def class_folder(class_word: str, repeats: int = 1) -> str:
    """kohya's reg folder for a class: ``1_woman`` (the class tokens are what follows ``N_``)."""
    cls = " ".join(class_word.split())
    if not cls or "/" in cls or cls.startswith("."):
        raise ConfigError(f"--class {class_word!r}: give a class word such as woman (no '/')")
    return f"{repeats}_{cls}"


def varied_prompts(project: Project, class_word: str) -> list[str]:
    """The class in each of the project's contexts and styles (``[tags.groups]``), or the class alone."""
    groups = project.config.tags.groups
    axes = [groups[g] for g in ("context", "style") if groups.get(g)]
    if not axes:
        axes = [v for v in groups.values() if v][:2]
    if not axes:
        return [class_word]
    return [", ".join([class_word, *combo]) for combo in itertools.product(*axes)]


def prompts_from_file(path: Path, class_word: str) -> list[str]:
    """One prompt per line (``#`` comments and blank lines skipped), ``{class}`` replaced by the class."""
    if not path.is_file():
        raise ConfigError("prompts file not found", path=path)
    text = read_text(path).text
    prompts = [ln.strip().replace("{class}", class_word) for ln in text.splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ConfigError(
            "the prompts file has no prompts", path=path, hint="one prompt per line; {class} is the class"
        )
    return prompts


def plan_reg(
    project: Project,
    class_word: str,
    *,
    count: int = 200,
    prompts_file: str | Path | None = None,
    steps: int = 20,
    seed: int = 0,
) -> RegPlan:
    """The plan for ``count`` reg images of ``class_word`` with the project's base model."""
    from lorawb.train.config import resolve_config

    if count < 1:
        raise ConfigError("--count must be at least 1")
    folder = class_folder(class_word)
    cls = folder.split("_", 1)[1]
    cfg = resolve_config(project)
    if not cfg.model.path:
        raise ConfigError(
            "no base model: set [model] path in lorawb.toml",
            path=project.config_path,
            hint="the reg images are drawn by the model you train on",
        )
    prompts = prompts_from_file(Path(prompts_file), cls) if prompts_file else varied_prompts(project, cls)
    res = cfg.dataset.resolution
    return RegPlan(
        class_word=cls,
        count=count,
        prompts=prompts,
        out_dir=str((project.reg_dir / folder).resolve()),
        model=cfg.model.model_dump(mode="json"),
        width=res,
        height=res,
        steps=steps,
        cfg=cfg.sample.cfg,
        seed=seed,
        negative=cfg.sample.negative,
    )


def save_plan(job: RegJob, plan: RegPlan) -> None:
    job.create()
    atomic_write_text(job.plan_file, json.dumps(asdict(plan), indent=1) + "\n")


def load_plan(job: RegJob) -> RegPlan:
    if not job.plan_file.is_file():
        raise RunError("no reg generation here", path=job.path, hint="start one with `lorawb reg generate --class ...`")
    return RegPlan(**json.loads(job.plan_file.read_text(encoding="utf-8")))


def start_reg(
    project: Project, plan: RegPlan, *, detach: bool = True, progress: ProgressFn | None = None
) -> str | None:
    """Draw the plan's missing images: detached (returns None at once) or here (returns the final state)."""
    job = RegJob.of(project)
    if job.is_alive():
        raise RunError("reg images are already being generated", path=job.path, hint=job.busy_hint())
    save_plan(job, plan)
    if detach:
        detached.spawn(job, WORKER_MODULE, [])
        return None
    return run_reg(job, progress=progress)


def stop_reg(project: Project, wait: float = 0.0) -> bool:
    return detached.wait_stopped(RegJob.of(project), wait)


@dataclass
class RegStatus:
    state: str  # none, starting, running, finished, stopped, failed, dead
    done: int
    total: int
    out_dir: str = ""
    error: str = ""


def reg_status(project: Project) -> RegStatus:
    """Where the project's reg generation stands (from its events and lock; no torch)."""
    job = RegJob.of(project)
    if not job.plan_file.is_file():
        return RegStatus("none", 0, 0)
    plan = load_plan(job)
    done = plan.count - len(plan.missing())
    events = read_events(job.events) if job.events.is_file() else []
    statuses = [e for e in events if e.get("type") == "status"]
    state = statuses[-1]["state"] if statuses else "starting"
    error = statuses[-1].get("error") or "" if statuses else ""
    if state in ("starting", "running") and not job.is_alive():
        state = "dead"
    return RegStatus(state, done, plan.count, plan.out_dir, error)


# --- the worker -----------------------------------------------------------------------------------


def run_reg(job: RegJob, *, lock_fd: int | None = None, progress: ProgressFn | None = None) -> str:
    """Lock → plan → load the model once → batches of missing images (PNG + caption) → status."""
    lock = detached.hold_lock(job, lock_fd) if not detached.lock_is_held_for_us() else _null()
    with lock, EventWriter(job.events) as events, detached.job_log(job, "reg") as log, detached.StopFlag(job) as stop:
        try:
            return _run(job, events, log, stop, progress)
        except BaseException as exc:
            message = exc.message if isinstance(exc, LorawbError) else f"{type(exc).__name__}: {exc}"
            log.exception("reg generation failed: %s", message)
            events.status("failed", error=message, hint=getattr(exc, "hint", "") or "see job.log")
            raise


def _run(job: RegJob, events: Any, log: Any, stop: detached.StopFlag, progress: ProgressFn | None) -> str:
    from lorawb.matrix.generate import Generator, ImageRequest
    from lorawb.train.config import ModelSection

    plan = load_plan(job)
    todo = plan.missing()
    total = plan.count
    done = total - len(todo)
    events.status("running", done=done, total=total)
    if not todo:
        events.status("finished", done=done, total=total)
        return "finished"
    gen = Generator.load(ModelSection(**plan.model))
    cfg = plan.cfg or gen.model.default_cfg
    log.info(
        "drawing %d reg images of %r at %dx%d, guidance %g", len(todo), plan.class_word, plan.width, plan.height, cfg
    )
    out = Path(plan.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for start in range(0, len(todo), BATCH):
        if stop.requested():
            events.status("stopped", done=done, total=total)
            log.info("stopped at %d/%d", done, total)
            return "stopped"
        idx = todo[start : start + BATCH]
        requests = [
            ImageRequest(
                prompt=plan.prompt(i),
                seed=plan.seed + i,
                negative=plan.negative,
                width=plan.width,
                height=plan.height,
                steps=plan.steps,
                cfg=cfg,
            )
            for i in idx
        ]
        for i, image in zip(idx, gen.run_batch(requests), strict=True):
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            path = out / plan.name(i)
            atomic_write_text(path.with_suffix(".txt"), plan.prompt(i) + "\n")  # the caption first: never uncaptioned
            atomic_write_bytes(path, buf.getvalue())
            done += 1
            ev = events.emit("image", done=done, total=total, path=path.name, prompt=plan.prompt(i))
            if progress:
                progress({**ev, "elapsed": time.time() - t0})
    events.status("finished", done=done, total=total)
    log.info("finished: %d reg images in %s", done, out)
    return "finished"


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def worker_main(job_dir: str, lock_fd: int | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded
    try:
        run_reg(RegJob(Path(job_dir).resolve()), lock_fd=lock_fd)
    except LorawbError as exc:
        print(f"lorawb: {exc}", flush=True)
        return 2
    return 0
