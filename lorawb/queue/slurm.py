"""Slurm as the queue's executor: each job an ``sbatch`` of its detached worker command.

The batch script runs the same ``python -m WORKER FOLDER [--resume]`` that a local start runs,
in the same folder (on the file system the cluster shares), with the job's output in
``slurm-<jobid>.out`` beside the worker's own files. ``--resume`` is decided when the script
starts, so a job Slurm requeues itself (preemption, ``--requeue``) resumes from its last
checkpoint too. ``--signal=B:TERM@grace`` asks the worker to save and stop before the time
limit; the runner then sees a run stopped without anyone asking and submits it again, resuming.

State comes from ``squeue`` (``sacct`` needs the accounting daemon, which many clusters and
all single-node set-ups lack) and, for a job that has left the queue, ``scontrol show job``.
``lorawb stop`` becomes ``scancel --signal=TERM --full``: the worker saves and stops as it does
for a local stop. No torch here.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

from lorawb.core.fsutil import atomic_write_text
from lorawb.errors import RunError
from lorawb.queue.kinds import Kind
from lorawb.queue.settings import QueueSettings
from lorawb.queue.store import Job
from lorawb.train import detached

SCRIPT = "slurm-job.sh"
RECORD = "slurm.json"  # {"job_id": ..., "queue_job": ...}: lets `lorawb stop` find the Slurm job of a folder
TIMEOUT = 30  # seconds for any Slurm command (a slow controller must not hang the runner forever)
ALIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "RESIZING")


def missing() -> str:
    """Why Slurm cannot be used from here ("" when sbatch, squeue and scancel are on PATH)."""
    lost = [c for c in ("sbatch", "squeue", "scancel", "scontrol") if shutil.which(c) is None]
    return f"{', '.join(lost)} not found on PATH" if lost else ""


def job_name(job: Job) -> str:
    return f"lorawb-{socket.gethostname().split('.')[0]}-{job.id}"


def gpus_for(job: Job, settings: QueueSettings) -> int:
    return job.gpus if settings.gpus is None else settings.gpus


def script(job: Job, kind: Kind, folder: Path, settings: QueueSettings) -> str:
    """The batch script: #SBATCH lines from [queue], then the worker command, resuming when it can."""
    gpus = gpus_for(job, settings)
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name(job)}",
        f"#SBATCH --output={folder}/slurm-%j.out",
        "#SBATCH --open-mode=append",
        f"#SBATCH --chdir={folder}",
        "#SBATCH --requeue",
    ]
    if settings.signal_grace:
        lines.append(f"#SBATCH --signal=B:TERM@{settings.signal_grace}")
    if settings.partition:
        lines.append(f"#SBATCH --partition={settings.partition}")
    if settings.account:
        lines.append(f"#SBATCH --account={settings.account}")
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    if settings.cpus:
        lines.append(f"#SBATCH --cpus-per-task={settings.cpus}")
    if settings.time:
        lines.append(f"#SBATCH --time={settings.time}")
    lines += [f"#SBATCH {extra}" for extra in settings.sbatch]
    env = detached.worker_env(max(1, job.gpus))
    lines.append(f"# lorawb queue job {job.id}: {job.title}")
    for key in ("PYTHONPATH", "PYTHONUNBUFFERED", "HF_HUB_OFFLINE", detached.LOCK_HELD_ENV):
        if key in env:
            lines.append(f"export {key}={shlex.quote(env[key])}")
    cmd = detached.worker_command(kind.worker, [str(folder)], max(1, job.gpus))
    resume = ""
    if kind.resume_file:
        lines.append("resume=()")
        lines.append(f"[ -f {shlex.quote(str(folder / kind.resume_file))} ] && resume=(--resume)")
        resume = ' "${resume[@]}"'
    lines.append("exec " + " ".join(shlex.quote(c) for c in cmd) + resume)
    return "\n".join(lines) + "\n"


def submit(job: Job, kind: Kind, folder: Path, settings: QueueSettings) -> str:
    """sbatch the job's worker into ``folder``; returns the Slurm job id (also written to slurm.json)."""
    path = folder / SCRIPT
    atomic_write_text(path, script(job, kind, folder, settings))
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}  # Slurm sets the job's own
    out = _run(["sbatch", "--parsable", str(path)], env=env)
    slurm_id = out.strip().split(";")[0]
    if not slurm_id.isdigit():
        raise RunError(f"sbatch did not give a job id: {out.strip()!r}", path=path)
    record = {"job_id": slurm_id, "queue_job": job.id, "submitted": time.time()}
    atomic_write_text(folder / RECORD, json.dumps(record) + "\n")
    return slurm_id


def find_by_name(job: Job) -> str:
    """The Slurm job a killed runner submitted for ``job`` but did not record ("" when none)."""
    try:
        out = _run(["squeue", "-u", getpass.getuser(), "-h", "-o", "%i", "--name", job_name(job)])
    except RunError:
        return ""
    ids = out.split()
    return ids[-1] if ids else ""


def states(ids: list[str]) -> dict[str, str] | None:
    """``{id: STATE}`` of the jobs still queued or running (one not in it has ended); None when squeue failed."""
    if not ids:
        return {}
    try:  # all of the user's jobs, filtered here: `squeue -j` fails on a job the controller has forgotten
        out = _run(["squeue", "-u", getpass.getuser(), "-h", "-o", "%i %T"])
    except RunError:
        return None
    got = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ids and parts[1] in ALIVE:
            got[parts[0]] = parts[1]
    return got


def final_state(slurm_id: str) -> str:
    """JobState of a job that has left the queue (COMPLETED, CANCELLED, TIMEOUT, PREEMPTED...), "" when forgotten."""
    try:
        out = _run(["scontrol", "show", "job", "-o", slurm_id], ok_codes=(0, 1))
    except RunError:
        return ""
    for word in out.split():
        if word.startswith("JobState="):
            return word.split("=", 1)[1]
    return ""


def stop(slurm_id: str, running: bool) -> None:
    """A running job: SIGTERM to the batch script and its children (the worker saves and stops); a pending one is cancelled."""
    if running:
        _run(["scancel", "--signal=TERM", "--full", slurm_id])
    else:
        _run(["scancel", slurm_id])


def record(folder: Path) -> dict[str, str] | None:
    """What slurm.json says about the folder's Slurm job (None when it has none)."""
    try:
        data = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("job_id") else None


def _run(cmd: list[str], env: dict[str, str] | None = None, ok_codes: tuple[int, ...] = (0,)) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunError(f"{cmd[0]} failed: {exc}", hint=missing() or "is the Slurm controller up? (`sinfo`)") from exc
    if out.returncode not in ok_codes:
        detail = (out.stderr or out.stdout).strip().splitlines()
        raise RunError(f"{' '.join(cmd[:2])} failed: {detail[-1] if detail else f'exit {out.returncode}'}")
    return out.stdout
