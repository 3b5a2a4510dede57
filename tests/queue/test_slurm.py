"""Slurm for real: a single-node cluster on localhost (tests/queue/slurm_cluster.py; skipped, with
the reason, where it cannot start). Queued runs are sbatch'ed as their detached worker into their
run folders: one finishes, one is stopped with `lorawb stop` (scancel --signal: it saves, and is
not requeued), one is killed with a plain `scancel` (it saves, and the queue submits it again,
resuming from its last checkpoint)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lorawb.cli import main as cli
from lorawb.queue import store
from lorawb.train.events import read_events
from lorawb.train.runfolder import RunFolder, summarize
from tests.conftest import wait_for
from tests.queue import slurm_cluster
from tests.queue.conftest import all_ended

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    try:
        c = slurm_cluster.start()
    except slurm_cluster.Unavailable as exc:
        print(f"\nno Slurm cluster: {exc}")
        pytest.skip(f"no Slurm cluster: {exc}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(c.conf))
        yield c
    c.stop()


def run_of(qdir: Path, job_id: str) -> RunFolder | None:
    job = store.load(qdir).get(job_id)
    return RunFolder(Path(job.folder)) if job.folder else None


def past_a_checkpoint(qdir: Path, job_id: str, max_steps: int):
    def check() -> bool:
        run = run_of(qdir, job_id)
        if run is None or not run.events.exists():
            return False
        evs = read_events(run.events)
        saved = [e["step"] for e in evs if e["type"] == "checkpoint" and e.get("resumable")]
        steps = [e["step"] for e in evs if e["type"] == "step"]
        return bool(saved) and bool(steps) and steps[-1] < max_steps

    return check


def test_queued_runs_on_slurm_finish_stop_and_come_back_after_scancel(cluster, tiny_project, qdir, capsys):
    toml = tiny_project / "lorawb.toml"
    toml.write_text(
        toml.read_text() + f'\n[queue]\nexecutor = "slurm"\npartition = "{cluster.partition}"\ngpus = 0\n',
        encoding="utf-8",
    )
    p = str(tiny_project)
    long = ["--set", "train.max_steps=40", "--set", "save.every_n_steps=2"]
    assert cli(["train", p, "--queue", "--name", "cancelled", *long]) == 0
    assert cli(["train", p, "--queue", "--name", "stopped", *long]) == 0
    assert cli(["train", p, "--queue", "--name", "short", "--set", "train.max_steps=2"]) == 0
    assert capsys.readouterr().out.split() == ["1", "2", "3"]

    wait_for(past_a_checkpoint(qdir, "1", 40), every=0.01)
    first_slurm_id = store.load(qdir).get("1").slurm_id
    subprocess.run(["scancel", first_slurm_id], check=True)  # what an admin, or a preemption, does
    wait_for(past_a_checkpoint(qdir, "2", 40), every=0.01)
    stopped = run_of(qdir, "2")
    assert cli(["stop", str(stopped.path)]) == 0
    assert "(Slurm job " in capsys.readouterr().out

    wait_for(lambda: all_ended(qdir), timeout=240)
    q = store.load(qdir)
    one, two, three = q.get("1"), q.get("2"), q.get("3")

    assert (one.state, one.requeues, one.attempts) == ("finished", 1, 2), one.error
    run = RunFolder(Path(one.folder))
    statuses = [e for e in read_events(run.events) if e["type"] == "status"]
    assert [s["state"] for s in statuses].count("stopped") == 1  # saved at the scancel
    resumed = [s["resumed_from"] for s in statuses if "resumed_from" in s]
    assert resumed and resumed[0] > 0 and summarize(run).step == 40
    outs = sorted(run.path.glob("slurm-*.out"))
    assert len(outs) == 2 and first_slurm_id in outs[0].name  # two Slurm jobs, one run folder
    assert "#SBATCH --partition=cpu" in (run.path / "slurm-job.sh").read_text()

    assert (two.state, two.requeues, two.wanted) == ("stopped", 0, "stop")
    s = summarize(stopped)
    assert s.state == "stopped" and s.resumable_step is not None and s.step < 40

    assert (three.state, three.attempts) == ("finished", 1)
    assert summarize(RunFolder(Path(three.folder))).step == 2
