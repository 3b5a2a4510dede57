"""The queue runner: one process per machine that starts queued jobs when lanes are free.

``python -m lorawb.queue.runner QUEUE_DIR`` is started on demand (``ensure_runner``: by
``queue add`` and every other queue command when there is work and no runner) by the same
launcher as a detached run: its own session, so it survives the app closing and SSH dropping,
and locked (``runner.lock``), so there is one per machine. It exits when nothing is queued or
running.

Each tick, under the queue's lock: follow the running jobs (a local worker holds its folder's
lock; a Slurm job is in ``squeue``), end or requeue the ones that stopped, then start queued
jobs in order on free lanes (a job waits for its ``after`` job and for as many lanes as it asks
for; the jobs behind a waiting multi-GPU job wait too, so it is not starved).

Never twice: a job's folder is recorded in the queue before its worker starts (kinds that make
the folder at start record the job as ``starting`` first), and every worker takes its folder's
lock. A runner killed at any moment, restarted, finds each running job's worker by that lock
(still running: followed; gone: resumed from its last checkpoint), and a folder made but not
recorded is adopted, not made again.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from lorawb.errors import LorawbError, RunError
from lorawb.queue import slurm, store
from lorawb.queue.kinds import Kind, kind_of
from lorawb.queue.lanes import detect_lanes, is_cpu
from lorawb.queue.store import Job, Queue
from lorawb.train import detached

MODULE = "lorawb.queue.runner"
POLL = 1.0  # seconds between ticks
SLURM_POLL = 3.0  # seconds between squeue calls


class RunnerDir(detached.JobFolder):
    """The queue folder, owned by the runner process while it runs."""

    worker_name = "queue runner"
    job_name = "queue"

    lock_file = property(lambda self: self.path / "runner.lock")
    pid_file = property(lambda self: self.path / "runner.pid")
    stop_file = property(lambda self: self.path / "runner.stop")
    events = property(lambda self: self.path / "runner.events.jsonl")
    log = property(lambda self: self.path / "runner.log")

    def busy_hint(self) -> str:
        return "one runner per machine: it is already starting the queue's jobs"


def runner_dir(qdir: Path | None = None) -> RunnerDir:
    return RunnerDir(qdir or store.queue_dir())


def ensure_runner(qdir: Path | None = None) -> bool:
    """Start the runner when the queue has work and none runs; True when this call started one."""
    rd = runner_dir(qdir)
    if rd.is_alive() or not store.load(rd.path).has_work():
        return False
    try:
        detached.spawn(rd, MODULE, [], out="runner.out")
    except RunError:
        return False  # another command started it a moment ago
    return True


class Runner:
    """One tick's work on the queue (the caller holds the lock and saves)."""

    def __init__(self, qdir: Path, log: logging.Logger, lanes: list[str] | None = None) -> None:
        self.qdir = qdir
        self.log = log
        self.lanes = lanes if lanes is not None else detect_lanes()
        self._slurm_at = 0.0

    # --- one tick -----------------------------------------------------------------------------------
    def tick(self, q: Queue) -> None:
        q.lanes = list(self.lanes)
        self.follow(q)
        if not q.paused:
            self.start_ready(q)

    def follow(self, q: Queue) -> None:
        local = [j for j in q.running if j.executor != "slurm"]
        for job in local:
            self._guard(q, job, self.follow_local)
        on_slurm = [j for j in q.running if j.executor == "slurm"]
        if on_slurm and time.monotonic() - self._slurm_at >= SLURM_POLL:
            self._slurm_at = time.monotonic()
            self.follow_slurm(q, on_slurm)

    def start_ready(self, q: Queue) -> None:
        busy = {lane for j in q.running if j.executor != "slurm" for lane in j.lanes}
        free = [lane for lane in self.lanes if lane not in busy]
        for job in list(q.pending):
            if job.after and not self._after_done(q, job):
                continue
            if job.executor == "slurm":
                self._guard(q, job, lambda q, j: self.start(q, j, []))
                continue
            need = 1 if is_cpu(self.lanes) else max(1, job.gpus)
            if need > len(self.lanes):
                self.end(q, job, "failed", f"it asks for {need} GPUs; this machine has {len(self.lanes)}")
                continue
            if need > len(free):
                break  # it waits for its lanes, and the jobs behind it wait with it
            take, free = free[:need], free[need:]
            self._guard(q, job, lambda q, j, take=take: self.start(q, j, take))

    def _guard(self, q: Queue, job: Job, step) -> None:  # type: ignore[no-untyped-def]
        """Run one job's step; what goes wrong ends that job (failed, with why), never the runner."""
        try:
            step(q, job)
        except LorawbError as exc:
            self.end(q, job, "failed", exc.message + (f" ({exc.hint})" if exc.hint else ""))
        except Exception as exc:  # a bug: said in the log and on the job, the other jobs go on
            self.log.exception("job %s: %s", job.id, exc)
            self.end(q, job, "failed", f"{type(exc).__name__}: {exc}")

    def _after_done(self, q: Queue, job: Job) -> bool:
        try:
            dep = q.get(job.after)
        except store.QueueError:
            return True
        if dep.state in ("failed", "cancelled"):
            self.end(q, job, "cancelled", f"job {dep.id} it follows ended {dep.state}")
            return False
        return dep.state in ("finished", "stopped")

    # --- starting ---------------------------------------------------------------------------------
    def start(self, q: Queue, job: Job, lanes: list[str]) -> None:
        kind = kind_of(job)
        if job.wanted:  # cancelled while it was being started
            self.end(q, job, "cancelled" if job.wanted == "cancel" else "stopped")
            return
        if not job.folder and kind.prepare is not None:
            job.state, job.lanes = "starting", lanes
            job.started = time.time()
            store.save(q, self.qdir)  # a runner killed while it makes the folder adopts it (follow_local)
            self._bind(job, kind.prepare(job, q))
            store.save(q, self.qdir)
        folder = kind.folder(job)
        job.started = job.started or time.time()
        if folder.is_alive():  # someone runs it already (`lorawb resume`, an earlier runner's worker)
            self.log.info("job %s: %s is already running; following it", job.id, folder.path)
            job.state, job.lanes = "running", lanes
            return
        job.attempts += 1
        args = kind.worker_args(folder.path)
        if job.executor == "slurm":
            self._submit(q, job, kind, folder.path)
        else:
            self._spawn(job, kind, folder, args, lanes)
        job.state, job.lanes = "running", lanes
        where = f"Slurm job {job.slurm_id}" if job.executor == "slurm" else f"lane {','.join(lanes)}"
        self.log.info(
            "job %s started on %s: %s (%s)%s",
            job.id,
            where,
            job.title,
            folder.path,
            " resuming" if "--resume" in args else "",
        )

    def _spawn(self, job: Job, kind: Kind, folder: detached.JobFolder, args: list[str], lanes: list[str]) -> None:
        # The worker sees only its lanes.
        env = {} if is_cpu(lanes) else {"CUDA_VISIBLE_DEVICES": ",".join(lanes)}
        detached.spawn(folder, kind.worker, args[1:], max(1, job.gpus), env=env)

    def _submit(self, q: Queue, job: Job, kind: Kind, folder: Path) -> None:
        from lorawb.core.project import Project
        from lorawb.queue.settings import queue_settings

        job.state = "starting"
        store.save(q, self.qdir)  # a runner killed inside sbatch finds the job by its name
        job.slurm_id = slurm.submit(job, kind, folder, queue_settings(Project.load(job.project)))
        job.slurm_state = "PENDING"

    def _bind(self, job: Job, folder: Path) -> None:
        job.folder = str(folder)
        if job.params.get("sweep"):
            from lorawb.sweep.plan import record_member

            record_member(job)

    # --- following --------------------------------------------------------------------------------
    def follow_local(self, q: Queue, job: Job) -> None:
        kind = kind_of(job)
        if not job.folder:  # killed while making it: the folder it made, or none
            found = kind.adopt(job, q) if kind.adopt is not None else None
            if found is None:
                job.state = "queued"
                self.log.info("job %s: its start was interrupted; queued again", job.id)
                return
            self._bind(job, found)
            self.log.info("job %s: adopted %s, made by an interrupted start", job.id, found)
        folder = kind.folder(job)
        if folder.is_alive():
            job.state = "running"
            if job.wanted and not folder.stop_requested():
                folder.request_stop()  # asked while the worker was starting: it clears old requests as it starts
            return
        if job.state == "starting":  # made, not started: start it now (its lanes are still ours)
            job.state = "queued"
            self.start(q, job, job.lanes or [])
            return
        state, error = kind.state(job, Path(job.folder))
        self.ended(q, job, state, error)

    def follow_slurm(self, q: Queue, jobs: list[Job]) -> None:
        for job in jobs:
            if job.state == "starting" and not job.slurm_id:
                job.slurm_id = slurm.find_by_name(job)
                if not job.slurm_id:
                    job.state = "queued"
                    self.log.info("job %s: its submission was interrupted; queued again", job.id)
        ids = [j.slurm_id for j in jobs if j.slurm_id]
        live = slurm.states(ids)
        if live is None:
            return  # squeue failed: ask again next time, change nothing
        for job in jobs:
            if not job.slurm_id:
                continue
            if job.slurm_id in live:
                job.state, job.slurm_state = "running", live[job.slurm_id]
                continue
            job.slurm_state = slurm.final_state(job.slurm_id) or "gone"
            state, error = kind_of(job).state(job, Path(job.folder))
            self._guard(q, job, lambda q, j, s=state, e=error: self.ended(q, j, s, e))

    def ended(self, q: Queue, job: Job, state: str, error: str) -> None:
        """The job's worker is gone: it finished, failed, was stopped, or died (then it is requeued)."""
        if state == "finished":
            self.end(q, job, "finished")
        elif state == "failed":
            self.end(q, job, "failed", error or "the worker failed; see its log")
        elif job.wanted:
            self.end(q, job, "cancelled" if job.wanted == "cancel" else "stopped")
        elif state == "stopped" and job.executor != "slurm":
            self.end(q, job, "stopped")  # stopped by hand (`kill`, another tool): resume is the person's call
        elif job.requeues >= job.max_requeues:
            self.end(q, job, "failed", f"its worker stopped or died {job.requeues + 1} times; see {job.folder}")
        else:
            # Died (killed, the machine went down) or, on Slurm, preempted or out of time: again, resuming.
            why = f"Slurm job {job.slurm_id} {job.slurm_state}" if job.executor == "slurm" else "its worker died"
            job.requeues += 1
            job.state, job.lanes, job.slurm_id = "queued", [], ""
            q.jobs.remove(job)
            q.add(job, front=True)
            self.log.info("job %s: %s (%s); requeued to resume from its last checkpoint", job.id, why, state)

    def end(self, q: Queue, job: Job, state: str, error: str = "") -> None:
        for j in q.end(job, state, error):
            self.log.info("job %s %s%s", j.id, j.state, f": {j.error}" if j.error else "")


# --- the process ------------------------------------------------------------------------------------


def run_runner(qdir: Path, lock_fd: int | None = None, lanes: list[str] | None = None) -> None:
    """Tick until nothing is queued or running (or SIGTERM). The runner lock is let go while the
    queue lock is still held, so a job added at that moment starts a new runner."""
    rd = RunnerDir(qdir)
    qlock = store.QueueLock(qdir)
    with detached.hold_lock(rd, lock_fd), detached.job_log(rd, "queue") as log, detached.StopFlag(rd) as stop:
        runner = Runner(qdir, log, lanes)
        log.info("runner started (pid %d); lanes: %s", os.getpid(), ", ".join(runner.lanes))
        while not stop.requested():
            qlock.acquire()
            try:
                q = store.load(qdir)
                before = q.to_json()
                runner.tick(q)
                if q.to_json() != before:
                    store.save(q, qdir)
                if not q.has_work():
                    log.info("nothing left to run; the runner ends")
                    break  # the queue lock stays held until the runner lock is let go
            except BaseException:
                qlock.release()
                raise
            qlock.release()
            time.sleep(POLL)
    qlock.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("queue_dir")
    parser.add_argument("--lock-fd", type=int, default=None, help="the runner lock, taken by the launcher")
    args = parser.parse_args(argv)
    try:
        run_runner(Path(args.queue_dir).resolve(), args.lock_fd)
    except LorawbError as exc:
        print(f"lorawb: {exc}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
