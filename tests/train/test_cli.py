"""`lorawb train/runs/stop/resume` and the detached-launch command line."""

from __future__ import annotations

import json
import sys

import pytest

from lorawb.cli import main
from lorawb.train.process import worker_command, worker_env
from lorawb.train.runfolder import RunFolder
from tests.train.conftest import make_project

pytestmark = pytest.mark.slow


def test_train_runs_stop_resume_commands(tmp_path, tiny_sd1, capsys):
    root = make_project(tmp_path / "proj", tiny_sd1, n_images=3)
    assert main(["train", str(root), "--set", "train.max_steps=2", "--name", "cli"]) == 0
    out = capsys.readouterr().out
    run_id = out.splitlines()[0]
    assert run_id.endswith("-cli") and "finished at step 2/2" in out
    assert main(["runs", str(root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["state"], r["step"], r["max_steps"]) for r in rows] == [(run_id, "finished", 2, 2)]
    assert main(["runs", str(root)]) == 0
    table = capsys.readouterr().out
    assert run_id in table and "finished" in table and "2/2" in table
    assert main(["stop", "last", "--project", str(root)]) == 2
    assert "not running" in capsys.readouterr().err
    assert main(["resume", run_id[:15], "--project", str(root)]) == 2
    assert "already finished" in capsys.readouterr().err


def test_train_reports_bad_settings_without_a_traceback(tmp_path, tiny_sd1, capsys):
    root = make_project(tmp_path / "proj", tiny_sd1, n_images=1)
    assert main(["train", str(root), "--set", "train.batch_sise=2"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_sise: unknown key" in err and "Traceback" not in err
    assert not any((root / "runs").iterdir())


def test_multi_gpu_runs_launch_through_accelerate(tmp_path):
    run = RunFolder(tmp_path / "r")
    cmd = worker_command(run, num_processes=4, resume=True, lock_fd=7)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "4" and "--multi_gpu" in cmd
    assert cmd[cmd.index("-m", 3) :] == ["-m", "lorawb.train.worker", str(run.path), "--resume", "--lock-fd", "7"]
    assert worker_env(4)["LORAWB_LOCK_HELD"] == "1"
    single = worker_command(run, num_processes=1)
    assert single == [sys.executable, "-m", "lorawb.train.worker", str(run.path)]
    assert "LORAWB_LOCK_HELD" not in worker_env(1) and worker_env(1)["HF_HUB_OFFLINE"] == "1"


def test_resume_of_a_finished_run_prints_no_run_id(tmp_path, capsys):
    from lorawb.cli import main
    from lorawb.train.events import EventWriter
    from lorawb.train.runfolder import RunFolder

    run = RunFolder(tmp_path / "runs" / "20261125-000000-done").create()
    (run.state / "resume.pt").write_bytes(b"x")
    (run.path / "config.toml").write_text("")
    with EventWriter(run.events) as ev:
        ev.status("finished")
    assert main(["resume", str(run.path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "already finished" in captured.err


def test_train_detach_prints_the_run_id_alone_on_stdout(tmp_path, tiny_sd1):
    """`rid=$(lorawb train --detach)` gets the run id; the hint goes to stderr."""
    import os
    import subprocess
    import time
    from pathlib import Path

    from lorawb.core.project import Project
    from lorawb.train.runfolder import find_run, summarize

    root = make_project(tmp_path / "proj", tiny_sd1, n_images=2)
    repo = Path(__file__).resolve().parents[2]
    script = f'rid=$("{sys.executable}" -m lorawb train -p "{root}" --detach --set train.max_steps=1) && echo "[$rid]"'
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(repo)}, timeout=120
    )
    assert out.returncode == 0, out.stderr
    rid = out.stdout.strip()[1:-1]
    assert out.stdout.strip() == f"[{rid}]" and "\n" not in rid
    assert f"lorawb watch {rid}" in out.stderr
    run = find_run(Project.load(root).runs_dir, rid)
    assert run.id == rid
    deadline = time.monotonic() + 120
    while summarize(run).alive or summarize(run).state in ("starting", "running"):
        assert time.monotonic() < deadline, "the detached run did not end"
        time.sleep(0.2)  # the detached run ends on its own time
    assert summarize(run).state == "finished"
