"""Jobs that draw a list of images with the project's generator: `lorawb reg generate`, `lorawb generate`.

Each kind of job has one folder per project under ``.lorawb/`` (``reg-generate/``,
``generate/``) that one detached worker owns while it runs (lorawb.train.detached: the lock,
the pid, the stop request, the launcher): ``plan.json`` (what to draw, written before the
worker starts), ``events.jsonl`` (status, and one ``image`` event per image), ``job.log``
and ``worker.out``. The plan says which module reads it (``plan["module"]``), so one worker
command serves every kind:

    python -m lorawb.matrix.job_worker JOB_DIR --lock-fd N

Read ``draw_missing`` top to bottom: the images still missing → load the model once → batches
(one pipeline call each, the costly setting outermost) → per image: ``save`` → ``image``
event → stop between batches → ``finish`` → status. A rerun, or a resume after a stop or a
``kill -9``, draws only what is missing: a plan decides what exists.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lorawb.core.fsutil import atomic_write_text
from lorawb.core.project import STATE_DIR, Project
from lorawb.errors import LorawbError, RunError
from lorawb.train import detached
from lorawb.train.events import EventWriter, read_events

if TYPE_CHECKING:
    import logging

    from lorawb.matrix.generate import Generator
    from lorawb.matrix.requests import ImageRequest

WORKER_MODULE = "lorawb.matrix.job_worker"
ProgressFn = Callable[[dict[str, Any]], None]


class ImageJob(detached.JobFolder):
    """A project's image job of one kind (``.lorawb/<kind>/``)."""

    worker_name = "image generator"
    job_name = "image job"
    stop_command = ""

    plan_file = property(lambda self: self.path / "plan.json")
    log = property(lambda self: self.path / "job.log")

    @classmethod
    def of(cls, project: Project, kind: str) -> ImageJob:
        return cls(project.root / STATE_DIR / kind)

    def busy_hint(self) -> str:
        return f"wait for it to finish, or `{self.stop_command}` it first" if self.stop_command else super().busy_hint()


class Drawing(Protocol):
    """What a plan gives the drawing loop: the images still missing, and how to draw and keep each."""

    total: int

    def missing(self) -> list[Any]:
        """The items not drawn yet, in drawing order."""
        ...

    def request(self, item: Any) -> ImageRequest:
        """Every parameter of the item's image."""
        ...

    def generator(self, log: logging.Logger) -> Generator:
        """The loaded model, ready for these requests (helpers, LoRA)."""
        ...

    def save(self, item: Any, image: Any, batch: Sequence[Any], index: int, gen: Generator) -> str:
        """Write the image (and its caption, record): the path to report."""
        ...

    def finish(self, events: EventWriter, log: logging.Logger) -> None:
        """After the last image, when not stopped (scores, summaries)."""
        ...


# --- plan.json ------------------------------------------------------------------------------------


def save_plan(job: ImageJob, module: str, plan: dict[str, Any]) -> None:
    """Write what to draw; ``module`` reads it back in the worker (its ``load_plan(job)``)."""
    job.create()
    atomic_write_text(job.plan_file, json.dumps({"module": module, **plan}, indent=1) + "\n")


def read_plan(job: ImageJob, what: str, hint: str) -> dict[str, Any]:
    if not job.plan_file.is_file():
        raise RunError(f"no {what} here", path=job.path, hint=hint)
    data = json.loads(job.plan_file.read_text(encoding="utf-8"))
    data.pop("module", None)
    return data


def load_drawing(job: ImageJob) -> Drawing:
    data = json.loads(job.plan_file.read_text(encoding="utf-8"))
    return importlib.import_module(data["module"]).load_plan(job)


# --- starting, stopping, status (no torch) --------------------------------------------------------


def start(
    job: ImageJob,
    module: str,
    plan: dict[str, Any],
    *,
    detach: bool = True,
    progress: ProgressFn | None = None,
    what: str = "images",
) -> str | None:
    """Save the plan and draw its missing images: detached (returns None at once) or here (the final state)."""
    refuse_if_running(job, what)
    save_plan(job, module, plan)
    if detach:
        detached.spawn(job, WORKER_MODULE, [])
        return None
    return run(job, progress=progress)


def refuse_if_running(job: ImageJob, what: str) -> None:
    """Before a new plan replaces the one a worker is drawing."""
    if job.is_alive():
        raise RunError(f"{what} are already being generated", path=job.path, hint=job.busy_hint())


def stop(job: ImageJob, wait: float = 0.0) -> bool:
    return detached.wait_stopped(job, wait)


@dataclass
class JobStatus:
    state: str  # none, starting, running, finished, stopped, failed, dead
    done: int
    total: int
    error: str = ""
    hint: str = ""


def status(job: ImageJob, done: int, total: int) -> JobStatus:
    """Where a job stands, from its events and lock (``done`` of ``total``: what its plan finds on disk)."""
    events = read_events(job.events) if job.events.is_file() else []
    statuses = [e for e in events if e.get("type") == "status"]
    last = statuses[-1] if statuses else {}
    state = last.get("state", "starting")
    if state in ("starting", "running") and not job.is_alive():
        state = "dead"
    return JobStatus(state, done, total, last.get("error") or "", last.get("hint") or "")


# --- the worker -----------------------------------------------------------------------------------


def run(job: ImageJob, *, lock_fd: int | None = None, progress: ProgressFn | None = None) -> str:
    """Lock → the plan → draw what is missing → status (failed, with the error, when it raises)."""
    lock = contextlib.nullcontext() if detached.lock_is_held_for_us() else detached.hold_lock(job, lock_fd)
    with (
        lock,
        EventWriter(job.events) as events,
        detached.job_log(job, job.path.name) as log,
        detached.StopFlag(job) as stopflag,
    ):
        try:
            return draw_missing(load_drawing(job), events, log, stopflag, progress)
        except BaseException as exc:
            message = exc.message if isinstance(exc, LorawbError) else f"{type(exc).__name__}: {exc}"
            log.exception("%s failed: %s", job.job_name, message)
            events.status("failed", error=message, hint=getattr(exc, "hint", "") or "see job.log")
            raise


def draw_missing(
    plan: Drawing,
    events: EventWriter,
    log: logging.Logger,
    stopflag: detached.StopFlag,
    progress: ProgressFn | None = None,
) -> str:
    from lorawb.matrix.requests import plan_batches

    todo = plan.missing()
    total = plan.total
    done = total - len(todo)
    events.status("running", done=done, total=total)
    if todo:
        gen = plan.generator(log)
        requests: dict[ImageRequest, list[Any]] = {}
        for item in todo:
            requests.setdefault(plan.request(item), []).append(item)
        batches = plan_batches([r for r, items in requests.items() for _ in items], size=getattr(plan, "batch", 8))
        t0 = time.time()
        for batch in batches:
            if stopflag.requested():
                events.status("stopped", done=done, total=total)
                log.info("stopped at %d/%d", done, total)
                return "stopped"
            items = [requests[r].pop(0) for r in batch]
            for i, (item, image) in enumerate(zip(items, gen.run_batch(batch), strict=True)):
                path = plan.save(item, image, items, i, gen)
                done += 1
                ev = events.emit("image", done=done, total=total, path=path, prompt=batch[i].prompt)
                if progress:
                    progress({**ev, "elapsed": time.time() - t0})
    plan.finish(events, log)
    events.status("finished", done=done, total=total)
    log.info("finished: %d of %d images", done, total)
    return "finished"


def worker_main(job_dir: str, lock_fd: int | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded
    try:
        run(ImageJob(Path(job_dir).resolve()), lock_fd=lock_fd)
    except LorawbError as exc:
        print(f"lorawb: {exc}", flush=True)
        return 2
    return 0
