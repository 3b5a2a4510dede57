"""Fixtures for the queue tests: a queue of its own per test (LORAWB_STATE_DIR), small projects, a
runner that is always stopped at the end, and a helper that waits for a condition."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import wait_for


@pytest.fixture
def qdir(tmp_path, monkeypatch) -> Path:
    """This test's own queue folder (and no machine-wide settings); its runner is ended afterwards."""
    state = tmp_path / "state"
    monkeypatch.setenv("LORAWB_STATE_DIR", str(state))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    yield state / "queue"
    stop_runner_and_jobs(state / "queue")


def stop_runner_and_jobs(qdir: Path) -> None:
    """SIGTERM the runner and every worker a job of this queue still runs (processes this test started)."""
    from lorawb.queue import store
    from lorawb.queue.kinds import kind_of
    from lorawb.queue.runner import runner_dir

    rd = runner_dir(qdir)
    pids = [rd.pid()] if rd.is_alive() else []
    try:
        jobs = store.load(qdir).jobs
    except store.QueueError:  # the test broke the file on purpose
        jobs = []
    for job in jobs:
        if job.folder and job.executor == "local":
            folder = kind_of(job).folder(job)
            if folder.is_alive():
                pids.append(folder.pid())
    for pid in pids:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not rd.is_alive(), timeout=30)


@pytest.fixture
def tiny_project(tmp_path, tiny_model) -> Path:
    """A project on the tiny model: 3 images, 32 px, no samples."""
    from tests.train.conftest import make_project

    return make_project(tmp_path / "proj", tiny_model, n_images=3)


def job_states(qdir: Path) -> dict[str, str]:
    from lorawb.queue import store

    return {j.id: j.state for j in store.load(qdir).jobs}


def all_ended(qdir: Path) -> bool:
    from lorawb.queue import store

    q = store.load(qdir)
    return bool(q.jobs) and not any(j.active for j in q.jobs)
