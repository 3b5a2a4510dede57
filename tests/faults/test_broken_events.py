"""Broken events.jsonl files: garbage, a half-written last line, a step of 1e400 or "abc", a nan loss.
Every reader skips and names the bad lines (`lorawb runs`, `runs --json`, `watch`, the Train tab's
monitor), they agree on what the run is (one fold of its events), and `watch` exits on a run that is
not running however its file ends."""

from __future__ import annotations

import json
import threading

import pytest

from lorawb.cli import main
from lorawb.core.project import init_project
from lorawb.train.events import EventWriter, read_events
from lorawb.train.monitor import RunMonitor
from lorawb.train.runfolder import RunFolder, summarize

BAD_LINES = [
    ('{"type":"step","step":1e400,"epoch":0,"loss":0.5}', "step is inf"),
    ('{"type":"step","step":"abc","epoch":0,"loss":0.5}', 'step is "abc"'),
    ('{"type":"step","step":3,"epoch":0,"loss":NaN}', "loss is nan"),
    ('{"type":"step","step":3,"epoch":0,"loss":0.5,"lr":Infinity}', "lr is inf"),
    ('{"type":"step","step":' + "9" * 400 + ',"loss":0.5}', "not a whole number"),
    ('{"type":"status","state":"exploded"}', "state is"),
    ("\x00\x01 garbage \xff", "not JSON"),
    ('{"type":"checkpoint","step":2,"path":7}', "path is 7"),
]


def run_with(tmp_path, lines: list[str], tail: str = "", name: str = "20261125-100000-a") -> RunFolder:
    root = tmp_path / "p"
    if not root.exists():
        init_project(root, trigger="zkx_mira")
    run = RunFolder(root / "runs" / name).create()
    run.config.write_text("[train]\nmax_steps = 10\n")
    good = [
        json.dumps({"type": "status", "state": "running", "max_steps": 10, "time": 100.0}),
        json.dumps({"type": "step", "step": 1, "epoch": 1, "loss": 0.9, "lr": 1e-4, "it_s": 2.0, "time": 101.0}),
        json.dumps({"type": "step", "step": 2, "epoch": 1, "loss": 0.7, "lr": 1e-4, "it_s": 2.0, "time": 102.0}),
        json.dumps({"type": "checkpoint", "step": 2, "path": "checkpoints/a-000002.safetensors", "resumable": True}),
    ]
    run.events.write_bytes(("\n".join([*good[:2], *lines, *good[2:]]) + "\n" + tail).encode())
    return run


@pytest.mark.parametrize(
    "line, why",
    BAD_LINES,
    ids=["step-1e400", "step-abc", "loss-nan", "lr-inf", "step-400-digits", "bad-state", "garbage", "path-7"],
)
def test_a_malformed_line_is_skipped_and_named_by_runs_json_and_watch(tmp_path, capsys, line, why):
    run = run_with(tmp_path, [line])
    root = str(tmp_path / "p")
    assert main(["runs", "-p", root, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["step"], row["loss"], row["state"], row["checkpoints"]) == (2, 0.7, "dead", 1)
    assert len(row["malformed_lines"]) == 1 and row["malformed_lines"][0].startswith("line 3: ")
    assert why in row["malformed_lines"][0]
    assert main(["runs", "-p", root]) == 0
    out = capsys.readouterr().out
    assert "events.jsonl: malformed lines skipped: line 3: " in out and why in out
    assert main(["watch", run.id, "-p", root, "--interval", "0.01"]) == 1  # dead: no process holds the lock
    out = capsys.readouterr().out
    assert "dead at step 2" in out and "malformed lines skipped: line 3: " in out and why in out


def watch_in_thread(args: list[str], seconds: float = 20.0) -> tuple[bool, list[int]]:
    """``lorawb watch`` in a thread: (it returned within ``seconds``, [its exit code])."""
    rc: list[int] = []
    th = threading.Thread(target=lambda: rc.append(main(args)), daemon=True)
    th.start()
    th.join(seconds)
    return not th.is_alive(), rc


@pytest.mark.parametrize(
    "tail",
    [
        '{"type":"status","state":"fin',  # killed while writing its last line
        "garbage without an end of line",
        "x" * 3_000_000,  # a half line longer than a whole read
    ],
    ids=["half-status", "garbage", "3MB-half-line"],
)
@pytest.mark.parametrize("state", ["finished", "running"])
def test_watch_exits_on_a_run_that_is_not_running_however_its_file_ends(tmp_path, capsys, tail, state):
    run = run_with(tmp_path, [json.dumps({"type": "status", "state": state, "step": 2})], tail=tail)
    done, rc = watch_in_thread(["watch", str(run.path), "--interval", "0.01"])
    assert done, "lorawb watch hangs on a run that ended"
    out = capsys.readouterr().out
    assert rc == [0 if state == "finished" else 1]
    assert f"{'finished' if state == 'finished' else 'dead'} at step 2" in out
    assert "half written" in out or "longer than 1048576 bytes" in out  # named, whatever its length


def test_watch_exits_on_a_run_with_no_state_and_no_process(tmp_path, capsys):
    run = run_with(tmp_path, [])
    run.events.write_text("not json\n{also not")
    done, rc = watch_in_thread(["watch", str(run.path), "--interval", "0.01"])
    assert done and rc == [1]
    out = capsys.readouterr().out
    assert "is not running" in out and "line 1: not JSON" in out


def test_a_line_longer_than_a_read_is_skipped_and_the_events_after_it_are_read(tmp_path):
    run = run_with(tmp_path, ['{"type":"warning","text":"' + "x" * 5000 + '"}'])
    m = RunMonitor(run, max_bytes=1024)
    m.catch_up()
    v = m.snapshot()
    assert v.step == 2 and v.checkpoints[0].step == 2 and not m.pending
    assert v.problems == ("line 3: longer than 1024 bytes",)


def test_the_train_tab_is_not_told_to_poll_again_for_a_half_line(tmp_path):
    """`pending` (poll again at once) means complete lines are waiting, not a half line that may never end."""
    run = run_with(tmp_path, [], tail='{"type":"step","step":3')
    m = RunMonitor(run)
    m.poll()
    assert not m.pending and m.snapshot().step == 2


def test_runs_watch_and_the_train_tab_fold_the_same_events_the_same_way(tmp_path):
    """One fold: the run list and the monitor agree on a resumed run's state, step, losses, pause,
    checkpoints (one saved twice), the resumable step and the max_steps a checkpoint event carries."""
    run = run_with(tmp_path, [])
    with EventWriter(run.events) as w:
        w.emit("status", state="stopped", step=2, time=103.0)
        w.emit("status", state="starting", resumed=True, time=200.0)
        w.emit("status", state="running", step=1, max_steps=12, time=201.0)
        w.emit("step", step=2, epoch=1, loss=0.4, lr=1e-4, it_s=1.0, time=202.0)  # trained again after resume
        w.emit("checkpoint", step=2, path="checkpoints/a-000002.safetensors", resumable=True, time=203.0)
        w.emit("step", step=3, epoch=1, loss=0.3, lr=1e-4, time=204.0)  # no it_s: derived from the times
        w.emit("status", state="failed", error="out of memory", hint="lower train.batch_size", step=3, time=205.0)
    s = summarize(run)
    m = RunMonitor(run)
    m.catch_up()
    v = m.snapshot()
    assert (s.display_state, s.step, s.max_steps, s.loss, s.it_s) == (
        v.display_state,
        v.step,
        v.max_steps,
        v.loss,
        v.it_s,
    )
    assert s.loss_smooth == pytest.approx(v.loss_smooth) and s.elapsed == pytest.approx(v.elapsed)
    assert (s.resumable_step, len(s.checkpoints)) == (v.resumable_step, len(v.checkpoints)) == (2, 1)
    assert (s.state, s.step, s.max_steps, s.elapsed) == ("failed", 3, 12, pytest.approx(8.0))
    assert s.error == "out of memory" and v.error == "out of memory\n  hint: lower train.batch_size"


def test_event_problem_is_the_one_schema():
    from lorawb.train.events import event_problem

    assert event_problem({"type": "step", "step": 3, "loss": 0.5, "seed": -1}) is None
    assert event_problem({"type": "step", "step": True}) == "step is true, not a whole number from 0 to 2^53"
    assert event_problem([1, 2]) == "not a JSON object"


def test_read_events_skips_what_the_fold_would_skip(tmp_path):
    run = run_with(tmp_path, [line for line, _ in BAD_LINES])
    kinds = [(e["type"], e.get("step")) for e in read_events(run.events)]
    assert kinds == [("status", None), ("step", 1), ("step", 2), ("checkpoint", 2)]
