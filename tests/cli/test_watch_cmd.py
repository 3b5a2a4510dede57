"""`lorawb watch` follows a run the test grows until it ends; `lorawb compare` prints the diff."""

from __future__ import annotations

import re
import threading
import time

from lorawb.cli import main
from lorawb.core.project import init_project
from lorawb.train.events import EventWriter
from lorawb.train.runfolder import RunFolder


def make_run(project, name, lr="1e-4"):
    run = RunFolder(project.runs_dir / name).create()
    run.config.write_text(f"[train]\nmax_steps = 30\nlearning_rate = {lr}\n")
    return run


def test_watch_follows_until_the_run_finishes(tmp_path, capsys, monkeypatch):
    project = init_project(tmp_path / "p", trigger="zkx_mira")
    run = make_run(project, "20261125-100000-a")
    w = EventWriter(run.events)
    w.status("running")
    lock = open(run.lock_file, "a+")  # noqa: SIM115 - the "trainer" holds the run lock while it runs
    import fcntl

    fcntl.flock(lock, fcntl.LOCK_EX)

    def trainer():
        for s in range(1, 31):
            w.step(s, 0, 1.0 / s, 1e-4, 20.0)
            if s == 20:
                w.sample(20, "zkx_mira, forest", "samples/000020-0.png")
                w.checkpoint(20, "checkpoints/a-000020.safetensors")
            time.sleep(0.01)
        w.status("finished")
        fcntl.flock(lock, fcntl.LOCK_UN)

    th = threading.Thread(target=trainer)
    th.start()
    monkeypatch.chdir(project.root)
    rc = main(["watch", "last", "--interval", "0.05"])
    th.join()
    lock.close()
    out = capsys.readouterr().out
    assert rc == 0
    assert out.splitlines()[0] == "run 20261125-100000-a  running"
    assert "sample  step 20  runs/20261125-100000-a/samples/000020-0.png  zkx_mira, forest" in out
    assert "checkpoint  step 20  runs/20261125-100000-a/checkpoints/a-000020.safetensors  missing" in out
    assert "step 30/30" in out
    # ~0.3 s of steps: "after 0:00", or "0:01" when a loaded machine stretches it
    assert re.search(r"run 20261125-100000-a finished at step 30 after 0:0[0-9]$", out.rstrip())


def test_watch_a_dead_run_exits_with_an_error_code(tmp_path, capsys):
    project = init_project(tmp_path / "p")
    run = make_run(project, "x")
    w = EventWriter(run.events)
    w.status("running")
    w.step(3, 0, 0.5, 1e-4, 1.0)
    assert main(["watch", str(run.path), "--interval", "0.01"]) == 1
    assert "dead at step 3" in capsys.readouterr().out


def test_watch_once_prints_progress_losses_and_samples(tmp_path, capsys):
    project = init_project(tmp_path / "p")
    run = make_run(project, "x")
    w = EventWriter(run.events)
    for s in range(1, 16):
        w.step(s, 0, 0.25, 1e-4, 4.0)
    w.sample(15, "zkx_mira, bar", "samples/000015-0.png")
    w.status("stopped")
    assert main(["watch", "x", "-p", str(project.root), "--once"]) == 0
    out = capsys.readouterr().out
    assert "stopped" in out and "15/30 (50%)" in out and "0.2500" in out and "zkx_mira, bar" in out


def test_compare_prints_the_changed_keys(tmp_path, capsys):
    project = init_project(tmp_path / "p")
    for name, lr in (("a", "1e-4"), ("b", "5e-5")):
        w = EventWriter(make_run(project, name, lr).events)
        w.step(1, 0, 0.5, 1e-4, 1.0)
    assert main(["compare", "a", "b", "-p", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert "train.learning_rate" in out and "5e-05" in out and "train.max_steps" not in out
    assert main(["compare", "a", "b", "-p", str(project.root), "--all"]) == 0
    assert "train.max_steps" in capsys.readouterr().out


def test_watch_unknown_run_is_a_user_error(tmp_path, capsys):
    project = init_project(tmp_path / "p")
    assert main(["watch", "nope", "-p", str(project.root)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
