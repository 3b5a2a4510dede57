"""The machine's job queue on disk: one JSON file, changed under a lock, written atomically.

    <state>/queue/                ($LORAWB_STATE_DIR or ~/.local/state/lorawb, see lorawb.core.userdirs)
      queue.json                  the jobs in queue order, whether the queue is paused, the next id
      queue.lock                  flock'ed for every read-modify-write: two `queue add` at once lose nothing
      runner.lock / runner.pid    the runner (lorawb.queue.runner), one per machine
      runner.log                  what the runner did (`lorawb queue log`)
      jobs/<id>/                  a job's own inputs (a train job's frozen config.toml)

Every change is ``with locked() as q: ...``: the lock is taken, the file read, the change made
and the file replaced atomically (temp file + rename) before the lock is let go, so a reader
without the lock always sees a whole file, and a runner killed mid-write loses nothing.

A job's life: ``queued`` → ``starting`` (its folder being made) → ``running`` (a worker, or a
Slurm job, owns its folder) → ``finished`` | ``stopped`` | ``failed`` | ``cancelled``. A job
whose worker died goes back to ``queued`` with its folder, at the head of the queue, and
resumes from its last checkpoint (``requeues`` counts how often).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lorawb.core.fsutil import atomic_write_text
from lorawb.core.userdirs import state_home
from lorawb.errors import LorawbError

QUEUE_FILE = "queue.json"
LOCK_FILE = "queue.lock"
VERSION = 1
ACTIVE = ("queued", "starting", "running")  # states that still need the runner
FINAL = ("finished", "stopped", "failed", "cancelled")
KEEP_FINISHED = 200  # ended jobs kept in queue.json for `queue list --all` (the oldest are dropped)


class QueueError(LorawbError):
    """A queue command cannot be carried out (no such job, bad position...)."""


def queue_dir() -> Path:
    return state_home() / "queue"


@dataclass
class Job:
    """One queued piece of work: a worker command on a folder (a run, a matrix, a reg job...)."""

    id: str
    kind: str  # a name in lorawb.queue.kinds.KINDS
    project: str  # the project folder (absolute)
    title: str  # what `queue list` shows
    gpus: int = 1  # GPU lanes (processes) it needs
    executor: str = "local"  # local | slurm
    state: str = "queued"
    folder: str = ""  # the folder its worker writes (absolute); "" until it is made
    params: dict[str, Any] = field(default_factory=dict)  # what its kind needs to make the folder
    after: str = ""  # a job that must have ended (finished or stopped) first
    lanes: list[str] = field(default_factory=list)  # the GPU lanes it runs on (local)
    slurm_id: str = ""
    slurm_state: str = ""  # what squeue said last (PENDING, RUNNING...)
    attempts: int = 0  # workers started for it
    requeues: int = 0  # times it went back to the queue after its worker died
    max_requeues: int = 3  # [queue] max_requeues when it was queued
    wanted: str = ""  # "stop" or "cancel" when a person asked: it is not requeued
    error: str = ""
    added: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def name(self) -> str:
        return Path(self.folder).name if self.folder else ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Queue:
    jobs: list[Job] = field(default_factory=list)
    paused: bool = False
    next_id: int = 1
    lanes: list[str] = field(default_factory=list)  # the runner's lanes, as it last saw them

    def get(self, job_id: str) -> Job:
        for j in self.jobs:
            if j.id == job_id:
                return j
        raise QueueError(f"no job {job_id} in the queue", hint="`lorawb queue list --all` shows every job")

    def has_job(self, job_id: str) -> bool:
        """True while ``job_id`` is still queued or running (an ended one is no longer waited for)."""
        return any(j.id == job_id and j.active for j in self.jobs)

    def find_folder(self, folder: Path | str) -> Job | None:
        """The newest job that writes ``folder``."""
        want = str(Path(folder).resolve())
        for j in reversed(self.jobs):
            if j.folder and str(Path(j.folder).resolve()) == want:
                return j
        return None

    @property
    def pending(self) -> list[Job]:
        """Jobs waiting to start, in queue order."""
        return [j for j in self.jobs if j.state == "queued"]

    @property
    def running(self) -> list[Job]:
        return [j for j in self.jobs if j.state in ("starting", "running")]

    def has_work(self) -> bool:
        return bool(self.running) or (bool(self.pending) and not self.paused)

    def new_id(self) -> str:
        n = self.next_id
        self.next_id += 1
        return str(n)

    def add(self, job: Job, front: bool = False) -> Job:
        if front:
            first = next((i for i, j in enumerate(self.jobs) if j.state == "queued"), len(self.jobs))
            self.jobs.insert(first, job)
        else:
            self.jobs.append(job)
        return job

    def move(self, job_id: str, position: int) -> int:
        """Put a queued job at ``position`` (1 = next to start) among the queued jobs; returns where it went."""
        job = self.get(job_id)
        if job.state != "queued":
            raise QueueError(f"job {job_id} is {job.state}: only queued jobs can be moved")
        pending = [j for j in self.pending if j is not job]
        position = max(1, min(position, len(pending) + 1))
        self.jobs.remove(job)
        if position <= len(pending):
            self.jobs.insert(self.jobs.index(pending[position - 1]), job)
        else:
            last = self.jobs.index(pending[-1]) + 1 if pending else len(self.jobs)
            self.jobs.insert(last, job)
        return position

    def position(self, job: Job) -> int | None:
        """1-based place among the queued jobs (None when it is not queued)."""
        pending = self.pending
        return pending.index(job) + 1 if job in pending else None

    def dependents(self, job: Job) -> list[Job]:
        return [j for j in self.jobs if j.after == job.id and j.active]

    def end(self, job: Job, state: str, error: str = "") -> list[Job]:
        """Record that ``job`` ended; a failed or cancelled one takes its queued followers with it.
        Returns every job ended (``job`` first)."""
        job.state, job.error, job.ended, job.lanes = state, error, time.time(), []
        ended = [job]
        if state in ("failed", "cancelled"):
            for dep in self.dependents(job):
                if dep.state == "queued":
                    ended += self.end(dep, "cancelled", f"job {job.id} it follows ended {state}")
        return ended

    def prune(self) -> list[Job]:
        """Drop the oldest ended jobs beyond KEEP_FINISHED; returns them."""
        ended = [j for j in self.jobs if not j.active]
        dropped = ended[: max(0, len(ended) - KEEP_FINISHED)]
        for j in dropped:
            self.jobs.remove(j)
        return dropped

    def to_json(self) -> str:
        data = {"version": VERSION, "paused": self.paused, "next_id": self.next_id, "lanes": self.lanes}
        data["jobs"] = [asdict(j) for j in self.jobs]
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path) -> Queue:
        try:
            data = json.loads(text)
            return cls(
                jobs=[Job.from_dict(j) for j in data.get("jobs", [])],
                paused=bool(data.get("paused", False)),
                next_id=int(data.get("next_id", 1)),
                lanes=[str(x) for x in data.get("lanes", [])],
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise QueueError(
                f"the queue file is not readable: {exc}",
                path=path,
                hint="move it aside to start an empty queue (the run folders keep everything they wrote)",
            ) from exc


def load(qdir: Path | None = None) -> Queue:
    """The queue as it is now (no lock: the file is always whole)."""
    path = (qdir or queue_dir()) / QUEUE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Queue()
    return Queue.from_json(text, path)


def save(q: Queue, qdir: Path | None = None) -> None:
    qdir = qdir or queue_dir()
    dropped = q.prune()
    atomic_write_text(qdir / QUEUE_FILE, q.to_json())
    for job in dropped:
        shutil.rmtree(job_dir(job, qdir), ignore_errors=True)


class QueueLock:
    """The flock every read-modify-write of queue.json holds (blocking; released on close or exit)."""

    def __init__(self, qdir: Path | None = None) -> None:
        self.qdir = qdir or queue_dir()
        self._fh: Any = None

    def acquire(self) -> None:
        import fcntl

        self.qdir.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.qdir / LOCK_FILE, "a+")  # noqa: SIM115 - held until release()
        fcntl.flock(self._fh, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the file lets the lock go
            self._fh = None


@contextlib.contextmanager
def locked(qdir: Path | None = None) -> Iterator[Queue]:
    """Read the queue under its lock; what the block changed is saved (atomically) before the lock goes."""
    lock = QueueLock(qdir)
    lock.acquire()
    try:
        q = load(lock.qdir)
        before = q.to_json()
        yield q
        if q.to_json() != before:
            save(q, lock.qdir)
    finally:
        lock.release()


def job_dir(job: Job, qdir: Path | None = None) -> Path:
    """The job's own inputs (a train job's config.toml), kept until the job is dropped from the list."""
    return (qdir or queue_dir()) / "jobs" / job.id
