"""The queue as a person reads it: per job its state, lane, progress and ETA (`queue list`, the Train tab).

A running job's progress and ETA come from its folder (a run's measured it/s, a matrix's
seconds per image). A queued training run's length is its steps at the speed the project's
latest run measured, and its start is when enough of the runner's lanes free up for it and the
job it follows has ended; where nothing measured a speed (a queued matrix), it and the jobs
that wait for it say "-" rather than guess.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from lorawb.queue.lanes import detect_lanes, is_cpu
from lorawb.queue.store import Job, Queue

SPEED_TTL = 30.0  # seconds a project's measured speed is reused before it is read again


@dataclass
class QueueRow:
    id: str
    position: int | None  # 1-based among the queued jobs
    state: str
    kind: str
    title: str
    project: str  # the project folder's name
    where: str  # "lane 0", "lanes 0,1", "cpu", "slurm 1234 RUNNING", ""
    progress: str  # "step 120/500", "40/96 images", ""
    eta: float | None  # seconds until it ends (running), or its expected length (queued)
    starts_in: float | None  # queued: seconds until it is expected to start
    error: str
    folder: str
    after: str

    def as_dict(self) -> dict:
        return dict(vars(self))


class RowMaker:
    """Builds rows; keeps what it read (configs, speeds) between polls."""

    def __init__(self, lanes: list[str] | None = None) -> None:
        self.given = lanes
        self._steps: dict[str, int | None] = {}
        self._speed: dict[str, tuple[float, float | None]] = {}

    def rows(self, q: Queue, ended: bool = False) -> list[QueueRow]:
        self.lanes = self.given or q.lanes or detect_lanes()  # the runner's lanes, else this process's view
        out = []
        for job in q.jobs:
            if not job.active and not ended:
                continue
            out.append(self._row(q, job))
        self._starts(out, q)
        return out

    def _row(self, q: Queue, job: Job) -> QueueRow:
        progress, eta = "", None
        if job.state in ("running", "starting") and job.folder:
            progress, eta = _progress(job)
        elif job.state == "queued" and job.kind == "train":
            eta = self._expected(job)
        where = ""
        if job.executor == "slurm":
            where = f"slurm {job.slurm_id} {job.slurm_state}".strip() if job.slurm_id else "slurm"
        elif job.lanes:
            where = "cpu" if is_cpu(job.lanes) else ("lane " if len(job.lanes) == 1 else "lanes ") + ",".join(job.lanes)
        return QueueRow(
            id=job.id,
            position=q.position(job),
            state=job.state,
            kind=job.kind,
            title=job.title,
            project=Path(job.project).name,
            where=where,
            progress=progress,
            eta=eta,
            starts_in=None,
            error=job.error,
            folder=job.folder,
            after=job.after,
        )

    def _expected(self, job: Job) -> float | None:
        """A queued run's length: its steps at the project's last measured speed."""
        if job.id not in self._steps:
            self._steps[job.id] = _max_steps(job)
        steps = self._steps[job.id]
        speed = self._project_speed(job.project)
        return steps / speed if steps and speed else None

    def _project_speed(self, project: str) -> float | None:
        now = time.monotonic()
        hit = self._speed.get(project)
        if hit is not None and now - hit[0] < SPEED_TTL:
            return hit[1]
        speed = _measured_speed(Path(project))
        self._speed[project] = (now, speed)
        return speed

    def _starts(self, rows: list[QueueRow], q: Queue) -> None:
        """When each queued local job should start: the runner's choices played forward in time
        (in order, a job waiting for its ``after`` job skipped, one waiting for lanes holding the
        ones behind it), with each job's expected length; unknown lengths make unknown starts."""
        inf = float("inf")
        by_id = {r.id: r for r in rows}
        free_at = {lane: 0.0 for lane in self.lanes}  # seconds until each lane is free
        ends: dict[str, float] = {}  # seconds until each job ends
        for job in q.running:
            eta = by_id[job.id].eta if job.id in by_id else None
            ends[job.id] = eta if eta is not None else inf
            for lane in job.lanes if job.executor != "slurm" else []:
                if lane in free_at:
                    free_at[lane] = ends[job.id]
        pending = [j for j in q.pending if j.executor != "slurm" and j.id in by_id]
        for job in pending:
            by_id[job.id].starts_in = None
        t = 0.0
        while pending and t != inf:
            for job in list(pending):
                after = ends.get(job.after, inf if job.after and q.has_job(job.after) else 0.0)
                if after > t:
                    continue  # waits for the job it follows; the ones behind may start
                need = 1 if is_cpu(self.lanes) else min(max(1, job.gpus), len(self.lanes))
                free = [lane for lane, at in free_at.items() if at <= t]
                if need > len(free):
                    break  # waits for lanes, and the jobs behind it wait too
                eta = by_id[job.id].eta
                ends[job.id] = t + eta if eta is not None else inf
                for lane in free[:need]:
                    free_at[lane] = ends[job.id]
                by_id[job.id].starts_in = t
                pending.remove(job)
            later = [v for v in (*free_at.values(), *ends.values()) if t < v < inf]
            t = min(later, default=inf)


def _progress(job: Job) -> tuple[str, float | None]:
    """What the job's folder says: (progress text, seconds left)."""
    folder = Path(job.folder)
    if job.kind == "train":
        from lorawb.train.runfolder import RunFolder, summarize

        s = summarize(RunFolder(folder))
        text = f"step {s.step}/{s.max_steps}" if s.max_steps else (f"step {s.step}" if s.step else "")
        return text, s.eta
    if job.kind == "matrix":
        from lorawb.matrix.folder import MatrixFolder, read_status

        st = read_status(MatrixFolder(folder))
        if st.total is None:
            return "", None
        left = st.pending if st.pending is not None else st.total - st.done
        eta = left * st.seconds_per_image if st.seconds_per_image else None
        return f"{st.total - left}/{st.total} images", eta
    from lorawb.train.events import read_events

    events = folder / "events.jsonl"
    last = [e for e in read_events(events) if "done" in e and "total" in e] if events.is_file() else []
    return (f"{last[-1]['done']}/{last[-1]['total']} images" if last else ""), None


def _max_steps(job: Job) -> int | None:
    from lorawb.errors import LorawbError
    from lorawb.train.config import load_run_config

    try:
        cfg = load_run_config(Path(job.params["config"]))
    except (KeyError, OSError, LorawbError):
        return None
    return cfg.train.max_steps or None


def _measured_speed(project: Path) -> float | None:
    """it/s of the project's latest run that measured one (None when no run has)."""
    from lorawb.train.runfolder import list_runs, summarize

    for run in reversed(list_runs(project / "runs")[-5:]):
        s = summarize(run)
        if s.it_s:
            return float(s.it_s)
    return None
