"""The queue without workers: order, move, pause, cancel, lanes, requeue rules, concurrent adds,
settings, the Slurm batch script. (Real workers: test_runner.py; a real Slurm: test_slurm.py.)"""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import pytest

from lorawb.core.project import Project, init_project
from lorawb.errors import ConfigError
from lorawb.queue import cancel, enqueue, move, set_paused, store
from lorawb.queue.lanes import detect_lanes
from lorawb.queue.runner import Runner
from lorawb.queue.store import Job, QueueError


@pytest.fixture
def project(tmp_path, qdir) -> Project:
    init_project(tmp_path / "p", trigger="zkx")
    return Project.load(tmp_path / "p")


def add(project: Project, title: str, **kw) -> Job:
    """A matrix job on a folder of its own (nothing is started: the runner is not woken)."""
    folder = project.root / "matrices" / title
    folder.mkdir(parents=True, exist_ok=True)
    return enqueue(project, "matrix", title, folder=folder, start=False, **kw)


def titles(qdir: Path, state: str = "queued") -> list[str]:
    return [j.title for j in store.load(qdir).jobs if j.state == state]


def test_jobs_keep_their_order_and_move_to_a_position(project, qdir):
    a, b, c, d = (add(project, t) for t in "abcd")
    assert [j.id for j in (a, b, c, d)] == ["1", "2", "3", "4"]
    assert titles(qdir) == ["a", "b", "c", "d"]
    assert move(d.id, 1) == 1
    assert titles(qdir) == ["d", "a", "b", "c"]
    assert move(d.id, 99) == 4  # past the end: last
    assert titles(qdir) == ["a", "b", "c", "d"]
    move(a.id, 3)
    assert titles(qdir) == ["b", "c", "a", "d"]
    q = store.load(qdir)
    assert [q.position(j) for j in q.jobs] == [1, 2, 3, 4]
    with pytest.raises(QueueError, match="no job 9"):
        move("9", 1)


def test_cancel_takes_a_queued_job_out_with_the_jobs_that_follow_it(project, qdir):
    a = add(project, "a")
    add(project, "b", after=a.id)
    c = add(project, "c")
    assert "and 1 job(s) that follow it" in cancel(a.id)
    states = {j.title: (j.state, j.error) for j in store.load(qdir).jobs}
    assert states["a"] == ("cancelled", "cancelled")
    assert states["b"] == ("cancelled", f"job {a.id} it follows ended cancelled")
    assert states["c"][0] == "queued"
    with pytest.raises(QueueError, match="already ended"):
        cancel(a.id)
    assert c.id == "3"


def test_one_folder_is_queued_once(project, qdir):
    add(project, "a")
    with pytest.raises(QueueError, match="already in the queue as job 1"):
        add(project, "a")


def _add_many(state_dir: str, root: str, n: int, tag: str) -> None:
    import os

    os.environ["LORAWB_STATE_DIR"] = state_dir
    project = Project.load(root)
    for i in range(n):
        enqueue(project, "matrix", f"{tag}{i}", folder=Path(root) / "m" / f"{tag}{i}", start=False)


def test_two_adds_at_once_lose_nothing(project, qdir):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_many, args=(str(qdir.parent), str(project.root), 25, tag)) for tag in ("x", "y")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    q = store.load(qdir)
    assert sorted(j.title for j in q.jobs) == sorted([f"x{i}" for i in range(25)] + [f"y{i}" for i in range(25)])
    assert sorted(int(j.id) for j in q.jobs) == list(range(1, 51))  # no id given twice
    assert [j.title for j in q.jobs if j.title.startswith("x")] == [f"x{i}" for i in range(25)]  # each in its order


def test_an_unreadable_queue_file_says_where_and_what_to_do(qdir):
    qdir.mkdir(parents=True)
    (qdir / "queue.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(QueueError) as err:
        store.load(qdir)
    assert err.value.path == qdir / "queue.json" and "move it aside" in err.value.hint


# --- lanes and the runner's choices (no process is started) ----------------------------------------


class Recorder(Runner):
    """A runner whose starts are recorded instead of spawning workers."""

    def __init__(self, qdir: Path, lanes: list[str]) -> None:
        super().__init__(qdir, logging.getLogger("test-queue"), lanes)
        self.started: list[tuple[str, list[str]]] = []

    def start(self, q, job, lanes):
        self.started.append((job.title, lanes))
        job.state, job.lanes = "running", lanes


def tick(runner: Runner, qdir: Path) -> None:
    with store.locked(qdir) as q:
        runner.start_ready(q)


def test_two_lanes_run_two_jobs_at_once_and_the_third_waits(project, qdir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    for t in "abc":
        add(project, t)
    r = Recorder(qdir, detect_lanes())
    tick(r, qdir)
    assert r.started == [("a", ["0"]), ("b", ["1"])]
    assert titles(qdir) == ["c"]
    with store.locked(qdir) as q:  # a ends: its lane is free again
        q.end(q.jobs[0], "finished")
    tick(r, qdir)
    assert r.started[-1] == ("c", ["0"])


def test_a_job_asking_for_two_gpus_waits_for_two_lanes_and_the_jobs_behind_it_wait(project, qdir):
    add(project, "one")
    add(project, "two", gpus=2)
    add(project, "three")
    r = Recorder(qdir, ["0", "1"])
    tick(r, qdir)
    assert r.started == [("one", ["0"])]  # "two" needs both lanes; "three" does not jump ahead of it
    with store.locked(qdir) as q:
        q.end(q.get("1"), "finished")
    tick(r, qdir)
    assert r.started[-1] == ("two", ["0", "1"])
    add(project, "four", gpus=3)
    with store.locked(qdir) as q:
        q.end(q.get("2"), "finished")
        q.end(q.get("3"), "cancelled")
    tick(r, qdir)
    assert store.load(qdir).get("4").state == "failed"
    assert "asks for 3 GPUs; this machine has 2" in store.load(qdir).get("4").error


def test_without_a_gpu_one_cpu_lane_runs_one_job_at_a_time(project, qdir, monkeypatch):
    monkeypatch.setattr("lorawb.queue.lanes.count_gpus", lambda: 0)
    assert detect_lanes() == ["cpu"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_lanes() == ["cpu"]
    add(project, "a")
    add(project, "b", gpus=2)  # processes share the CPU lane
    r = Recorder(qdir, ["cpu"])
    tick(r, qdir)
    assert r.started == [("a", ["cpu"])]
    with store.locked(qdir) as q:
        q.end(q.get("1"), "finished")
    tick(r, qdir)
    assert r.started[-1] == ("b", ["cpu"])


def test_a_paused_queue_starts_nothing_and_a_follower_waits_for_its_job(project, qdir):
    a = add(project, "a")
    add(project, "b", after=a.id)
    set_paused(True)
    r = Recorder(qdir, ["0", "1"])
    with store.locked(qdir) as q:
        r.tick(q)
    assert r.started == []
    with store.locked(qdir) as q:  # (set_paused(False) would wake a real runner)
        q.paused = False
    tick(r, qdir)
    assert r.started == [("a", ["0"])]  # b waits for a, though a lane is free
    with store.locked(qdir) as q:
        q.end(q.get(a.id), "stopped")  # stopped on purpose: its checkpoints are there to test
    tick(r, qdir)
    assert r.started[-1] == ("b", ["0"])


@pytest.mark.parametrize(
    ("executor", "recorded", "wanted", "requeues", "expect"),
    [
        ("local", "finished", "", 0, "finished"),
        ("local", "failed", "", 0, "failed"),
        ("local", "running", "", 0, "queued"),  # the worker died mid-run: resumed
        ("local", "running", "", 3, "failed"),  # died too often
        ("local", "stopped", "", 0, "stopped"),  # stopped by hand here: the person resumes it
        ("local", "stopped", "cancel", 0, "cancelled"),
        ("slurm", "stopped", "", 0, "queued"),  # preempted / out of time on Slurm: resumed
        ("slurm", "stopped", "stop", 0, "stopped"),  # `lorawb stop`: not requeued
    ],
)
def test_what_the_runner_does_when_a_worker_has_gone(project, qdir, executor, recorded, wanted, requeues, expect):
    add(project, "first")
    job = add(project, "gone")
    with store.locked(qdir) as q:
        j = q.get(job.id)
        j.state, j.executor, j.wanted, j.requeues, j.lanes = "running", executor, wanted, requeues, ["0"]
        Runner(qdir, logging.getLogger("test-queue"), ["0"]).ended(q, j, recorded, "boom")
    q = store.load(qdir)
    got = q.get(job.id)
    assert got.state == expect
    if expect == "queued":
        assert got.requeues == requeues + 1 and q.pending[0] is not None and q.pending[0].id == job.id  # first again
    if expect == "failed" and recorded != "failed":
        assert "died 4 times" in got.error


# --- settings and the Slurm script ------------------------------------------------------------------


def test_queue_settings_come_from_the_machine_then_the_project(project, tmp_path):
    from lorawb.queue.settings import machine_config_path, queue_settings

    machine = machine_config_path()
    machine.parent.mkdir(parents=True)
    machine.write_text('[queue]\nexecutor = "slurm"\npartition = "gpu"\ntime = "1:00:00"\n', encoding="utf-8")
    (project.root / "lorawb.toml").write_text(project.config_text + '\n[queue]\npartition = "a100"\n', encoding="utf-8")
    s = queue_settings(Project.load(project.root))
    assert (s.executor, s.partition, s.time) == ("slurm", "a100", "1:00:00")
    (project.root / "lorawb.toml").write_text(project.config_text + "\n[queue]\npartitio = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        queue_settings(Project.load(project.root))
    assert err.value.path == project.root / "lorawb.toml" and "queue.partitio" in err.value.message


def test_the_slurm_script_runs_the_detached_worker_resuming_when_it_can(project, tmp_path):
    from lorawb.queue.kinds import KINDS
    from lorawb.queue.settings import QueueSettings
    from lorawb.queue.slurm import script

    settings = QueueSettings(
        executor="slurm", partition="gpu", account="lab", time="4:00:00", sbatch=["--qos=high", "--mem=32G"]
    )
    job = Job(id="7", kind="train", project=str(project.root), title="train mira", gpus=2)
    run = tmp_path / "runs" / "r1"
    text = script(job, KINDS["train"], run, settings)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for want in (
        f"#SBATCH --output={run}/slurm-%j.out",
        f"#SBATCH --chdir={run}",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:TERM@120",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --time=4:00:00",
        "#SBATCH --qos=high",
        "#SBATCH --mem=32G",
    ):
        assert want in lines
    assert f"[ -f {run}/state/resume.pt ] && resume=(--resume)" in lines
    assert lines[-1].startswith("exec ") and "accelerate.commands.launch" in lines[-1]  # 2 processes
    assert lines[-1].endswith(f'-m lorawb.train.worker {run} "${{resume[@]}}"')
    cpu = script(Job(id="8", kind="matrix", project="", title="m"), KINDS["matrix"], run, QueueSettings(gpus=0))
    assert "--gres" not in cpu and "resume" not in cpu and cpu.splitlines()[-1].endswith(f"lorawb.matrix.worker {run}")


def test_etas_follow_the_lanes_and_the_job_each_waits_for(project, qdir):
    from lorawb.queue.rows import QueueRow, RowMaker

    a, b, c, d = (add(project, t) for t in "abcd")
    with store.locked(qdir) as q:
        q.lanes = ["0", "1"]  # what the runner saw
        q.get(a.id).state, q.get(a.id).lanes = "running", ["0"]
        q.get(b.id).after = a.id  # waits for a, though lane 1 is free
    q = store.load(qdir)

    def row(job, eta):
        return QueueRow(job.id, q.position(job), job.state, "train", "", "", "", "", eta, None, "", "", job.after)

    rows = [row(q.get(a.id), 100.0), row(q.get(b.id), 50.0), row(q.get(c.id), 30.0), row(q.get(d.id), None)]
    maker = RowMaker()
    maker.lanes = q.lanes
    maker._starts(rows, q)
    assert [r.starts_in for r in rows] == [None, 100.0, 0.0, 30.0]  # b after a; c on lane 1 now; d after c
    rows[2].eta = None  # c's length unknown (a queued matrix): lane 1 is never known to free up
    maker._starts(rows, q)
    assert [r.starts_in for r in rows] == [None, 100.0, 0.0, 150.0]  # d: lane 0, after b
    rows[1].eta = None
    maker._starts(rows, q)
    assert rows[3].starts_in is None  # behind two jobs of unknown length: unknown, not a guess
