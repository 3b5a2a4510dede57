"""The runner with real workers (the tiny model, a few steps): queued runs start on free lanes, a
runner killed with kill -9 mid-job (one worker with it) is restarted by the next queue command,
resumes the interrupted run from its last checkpoint, follows the worker that survived, and
starts nothing twice."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from lorawb.cli import main as cli
from lorawb.core.project import Project
from lorawb.queue import store
from lorawb.queue.runner import runner_dir
from lorawb.train.events import read_events
from lorawb.train.runfolder import RunFolder, list_runs, summarize
from tests.conftest import wait_for
from tests.queue.conftest import all_ended

pytestmark = pytest.mark.slow


def statuses(run: RunFolder) -> list[dict]:
    return [e for e in read_events(run.events) if e["type"] == "status"]


def test_a_killed_runner_resumes_the_interrupted_run_from_its_checkpoint_and_runs_nothing_twice(
    tiny_project, qdir, monkeypatch, capsys
):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4")  # two (pretend) GPU lanes: each worker is told its own
    p = str(tiny_project)
    assert (
        cli(["train", p, "--queue", "--name", "long", "--set", "train.max_steps=24", "--set", "save.every_n_steps=3"])
        == 0
    )
    assert cli(["queue", "add", "--", "train", "-p", p, "--name", "short", "--set", "train.max_steps=2"]) == 0
    ids = capsys.readouterr().out.split()
    assert ids == ["1", "2"]

    def long_run() -> RunFolder | None:
        job = store.load(qdir).get("1")
        return RunFolder(Path(job.folder)) if job.folder else None

    def past_a_checkpoint() -> bool:
        run = long_run()
        if run is None or not run.events.exists():
            return False
        evs = read_events(run.events)
        saved = [e["step"] for e in evs if e["type"] == "checkpoint" and e.get("resumable")]
        steps = [e["step"] for e in evs if e["type"] == "step"]
        return bool(saved) and bool(steps) and saved[-1] < steps[-1] < 24

    wait_for(past_a_checkpoint, every=0.005)
    run = long_run()
    worker, runner = run.pid(), runner_dir(qdir).pid()
    env = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    assert b"CUDA_VISIBLE_DEVICES=3" in env  # the lane it was given
    os.kill(runner, signal.SIGKILL)
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: not run.is_alive() and not runner_dir(qdir).is_alive())
    killed = summarize(run)
    assert killed.display_state == "dead" and killed.resumable_step is not None
    saved = killed.resumable_step
    assert store.load(qdir).get("1").state == "running"  # what the dead runner last wrote

    assert cli(["queue"]) == 0  # any queue command wakes a runner for the work left
    assert "runner running" in capsys.readouterr().out
    wait_for(lambda: all_ended(qdir))

    q = store.load(qdir)
    long_job, short_job = q.get("1"), q.get("2")
    assert (long_job.state, long_job.requeues, long_job.attempts) == ("finished", 1, 2)
    assert (short_job.state, short_job.requeues, short_job.attempts) == ("finished", 0, 1)
    assert summarize(run).step == 24 and any(s.get("resumed_from") == saved for s in statuses(run))
    runs = list_runs(Project.load(tiny_project).runs_dir)
    assert sorted(r.path for r in runs) == sorted(Path(j.folder) for j in (long_job, short_job))  # one folder each
    short_run = RunFolder(Path(short_job.folder))
    assert [s["state"] for s in statuses(short_run)].count("running") == 1  # started once
    log = runner_dir(qdir).log.read_text()
    assert "job 1: its worker died (running); requeued to resume from its last checkpoint" in log
    assert "job 1 started on lane 3" in log and "job 2 started on lane 4" in log
    assert log.count("job 2 started") == 1 and "resuming" in log


def test_a_run_folder_made_by_a_killed_runner_is_adopted_not_made_again(tiny_project, qdir):
    import time

    from lorawb.queue import queue_train
    from lorawb.queue.kinds import KINDS
    from lorawb.train.config import resolve_config
    from lorawb.train.process import create_run

    project = Project.load(tiny_project)
    cfg = resolve_config(project, None, ["train.max_steps=3"])
    job = queue_train(project, cfg, "adopt", start=False)
    other = create_run(project, resolve_config(project, None, ["train.max_steps=4"]), "other")
    with store.locked(qdir) as q:
        j = q.get(job.id)
        j.state, j.started = "starting", time.time()  # the runner wrote this, then made the folder, then died
    made = create_run(project, cfg, "adopt")
    q = store.load(qdir)
    assert KINDS["train"].adopt(q.get(job.id), q) == made.path
    assert made.path != other.path
