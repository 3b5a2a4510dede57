"""`--queue` on each queueable command and `lorawb queue` itself, on a paused queue (nothing starts)."""

from __future__ import annotations

import json
from pathlib import Path

from lorawb.cli import main as cli
from lorawb.queue import store


def queue_json(capsys) -> dict:
    capsys.readouterr()
    assert cli(["queue", "list", "--all", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_queueable_command_queues_its_job(tiny_project, qdir, capsys):
    p = str(tiny_project)
    assert cli(["queue", "pause"]) == 0
    assert cli(["train", p, "--queue", "--name", "one", "--set", "train.max_steps=3"]) == 0
    assert cli(["queue", "add", "--", "reg", "generate", p, "--class", "woman", "--count", "2"]) == 0
    matrix = tiny_project / "matrices" / "base"
    matrix.mkdir(parents=True)
    (matrix / "matrix.toml").write_text(
        '[matrix]\nprompt = "zkx_mira, {context}"\n[axes]\ncontext = ["forest", "bar"]\n'
    )
    assert cli(["matrix", "run", p, "base", "--queue"]) == 0
    out, err = capsys.readouterr()
    assert [ln for ln in out.splitlines() if ln.isdigit()] == ["1", "2", "3"]  # stdout: each job id alone
    assert "queued as job 3 (position 3 of 3); the queue is paused (`lorawb queue resume`)" in err

    data = queue_json(capsys)
    assert data["paused"] is True and data["runner"] is False
    jobs = {j["id"]: j for j in data["jobs"]}
    assert [(j["kind"], j["state"], j["position"]) for j in jobs.values()] == [
        ("train", "queued", 1),
        ("reg", "queued", 2),
        ("matrix", "queued", 3),
    ]
    assert jobs["1"]["folder"] == ""  # a run folder is made when the run starts
    assert jobs["2"]["folder"] == str((tiny_project / ".lorawb" / "reg-generate").resolve())
    assert (tiny_project / ".lorawb" / "reg-generate" / "plan.json").is_file()
    assert jobs["3"]["folder"] == str(matrix.resolve())
    config = store.job_dir(store.load(qdir).get("1"), qdir) / "config.toml"
    assert "max_steps = 3" in config.read_text()  # frozen when it was queued

    assert cli(["queue", "add", "--", "runs", p]) == 2
    assert "cannot be queued" in capsys.readouterr().err
    assert cli(["reg", "generate", p, "--class", "woman", "--count", "2", "--queue"]) == 2
    assert "already in the queue as job 2" in capsys.readouterr().err

    assert cli(["queue", "move", "3", "1"]) == 0
    assert cli(["queue", "cancel", "1"]) == 0
    capsys.readouterr()
    assert cli(["queue"]) == 0
    listing = capsys.readouterr().out
    assert "queue: 2 jobs waiting, 0 running; runner not running; PAUSED" in listing
    lines = [ln for ln in listing.splitlines() if ln.strip()[:1].isdigit()]
    assert [ln.split()[0] for ln in lines] == ["3", "2"]  # in queue order; the cancelled one is gone


def test_the_queue_log_says_what_the_runner_did(qdir, capsys):
    assert cli(["queue", "log"]) == 0
    assert "no queue log yet" in capsys.readouterr().out
    qdir.mkdir(parents=True)
    Path(qdir / "runner.log").write_text("".join(f"line {i}\n" for i in range(40)))
    assert cli(["queue", "log", "-n", "3"]) == 0
    assert capsys.readouterr().out == "line 37\nline 38\nline 39\n"
