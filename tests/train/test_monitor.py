"""RunMonitor / RunBoard / LogTail against run folders whose events.jsonl the tests grow by hand."""

from __future__ import annotations

import fcntl
import json
import sys
import types

import pytest

from lorawb.train import monitor as mon
from lorawb.train.events import EventWriter
from lorawb.train.monitor import LogTail, RunBoard, RunMonitor, format_duration, format_size
from lorawb.train.runfolder import RunFolder
from lorawb.train.runstate import Ema, Series


def make_run(tmp_path, name="20261125-100000-a", max_steps=None) -> RunFolder:
    run = RunFolder(tmp_path / "runs" / name).create()
    if max_steps is not None:
        run.config.write_text(f"[train]\nmax_steps = {max_steps}\nlearning_rate = 1e-4\n")
    return run


def steps(w: EventWriter, start: int, stop: int, t0: float = 1000.0, loss=lambda s: 1.0 / s) -> None:
    for s in range(start, stop):
        w.emit("step", step=s, epoch=s // 10, loss=loss(s), lr=1e-4 * s, it_s=2.0, time=t0 + s / 2)


class HeldLock:
    """Holds run.lock the way a live trainer does (flock on its own open file)."""

    def __init__(self, run: RunFolder) -> None:
        self.fh = open(run.lock_file, "a+")  # noqa: SIM115
        fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def test_reads_only_new_events_and_waits_for_a_complete_last_line(tmp_path):
    run = make_run(tmp_path)
    w = EventWriter(run.events)
    m = RunMonitor(run)
    assert m.poll() == 0 and m.snapshot().display_state == "unknown"
    steps(w, 1, 11)
    assert m.poll() == 10
    assert m.poll() == 0
    # a trainer caught mid-write: half a line is not an event yet
    with open(run.events, "a") as fh:
        fh.write('{"type": "step", "step": 11, "loss": 0.5')
    assert m.poll() == 0
    with open(run.events, "a") as fh:
        fh.write(', "lr": 0.001, "time": 1010}\n{"type": "step", "step": 12, "lo')
    assert m.poll() == 1
    v = m.snapshot()
    assert v.step == 11 and v.loss == 0.5 and v.lr == 0.001 and v.events == 11
    assert len(v.loss_xy[0]) == 11 and v.loss_xy[0][-1] == 11
    assert v.state == "running"


def test_corrupt_lines_are_counted_and_skipped(tmp_path):
    run = make_run(tmp_path)
    run.events.write_text('{"type":"step","step":1,"loss":1.0}\nnot json\n[1,2]\n{"type":"step","step":2,"loss":0.5}\n')
    m = RunMonitor(run)
    assert m.poll() == 2
    v = m.snapshot()
    assert v.bad_lines == 2 and v.loss_xy == ((1.0, 2.0), (1.0, 0.5))


def test_smoothing_is_debiased_and_adjustable(tmp_path):
    run = make_run(tmp_path)
    w = EventWriter(run.events)
    losses = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    for i, loss in enumerate(losses, 1):
        w.step(i, 0, loss, 1e-4, 1.0)
    m = RunMonitor(run, smoothing=0.9)
    m.poll()
    v = m.snapshot()
    assert v.smooth_xy[1][0] == pytest.approx(1.0)  # debiased: the first point is the first loss
    assert 0.3 < v.loss_smooth < 0.7  # a heavy EMA of an alternating 1/0 stays near the middle
    m.set_smoothing(0.0)
    v = m.snapshot()
    assert v.smooth_xy[1] == tuple(losses) and v.smoothing == 0.0
    m.set_smoothing(5)  # clamped
    assert m.smoothing == 0.999
    # new points after a change keep using the new strength, continuing the same EMA
    m.set_smoothing(0.5)
    w.step(7, 0, 1.0, 1e-4, 1.0)
    m.poll()
    ema = Ema(0.5)
    expected = [ema(x) for x in [*losses, 1.0]]
    assert m.snapshot().smooth_xy[1] == pytest.approx(tuple(expected))


def test_validation_loss_lr_speed_memory(tmp_path):
    run = make_run(tmp_path)
    w = EventWriter(run.events)
    w.step(1, 0, 0.3, 1e-4, 3.0, mem_gb=5.5, time=10.0)
    w.emit("val", step=1, val_loss=0.4)
    w.emit("step", step=2, epoch=0, loss=0.2, lr=2e-4, val_loss=0.35, time=12.0)  # no it_s: derived
    w.emit("step", step=6, epoch=1, loss=0.1, lr=3e-4, time=14.0)
    w.emit("gpu", mem_gb=7.25, util=88)
    m = RunMonitor(run)
    m.poll()
    v = m.snapshot()
    assert v.val_xy == ((1.0, 2.0), (0.4, 0.35)) and v.val_loss == 0.35
    assert v.lr_xy == ((1.0, 2.0, 6.0), (1e-4, 2e-4, 3e-4))
    assert v.it_s == pytest.approx(5 / 4)  # steps 1 -> 6 over 4 seconds
    assert v.s_it == pytest.approx(0.8)
    assert v.mem_gb == 7.25 and v.gpu_util == 88 and v.epoch == 1


def test_progress_eta_and_states(tmp_path):
    run = make_run(tmp_path, max_steps=100)
    w = EventWriter(run.events)
    w.status("running")
    steps(w, 1, 51)
    m = RunMonitor(run)
    m.poll()
    v = m.snapshot()
    # no process holds the lock: the events say running, the run is dead (crashed, killed)
    assert v.display_state == "dead" and v.ended and v.eta is None
    lock = HeldLock(run)
    try:
        m.catch_up()
        v = m.snapshot()
        assert v.alive and v.display_state == "running" and not v.ended
        assert v.max_steps == 100 and v.progress == 0.5
        assert v.eta == pytest.approx(50 / 2.0)  # 50 steps left at 2 it/s
        w.status("finished")
        m.poll()
        v = m.snapshot()
        assert v.display_state == "finished" and v.ended and v.eta is None
    finally:
        lock.release()


def test_failed_run_keeps_error_and_hint(tmp_path):
    run = make_run(tmp_path)
    w = EventWriter(run.events)
    w.status("failed", error="CUDA out of memory", hint="lower train.batch_size")
    m = RunMonitor(run)
    m.poll()
    v = m.snapshot()
    assert v.display_state == "failed" and "out of memory" in v.error and "batch_size" in v.error


def test_max_steps_from_events_beats_config(tmp_path):
    run = make_run(tmp_path, max_steps=100)
    w = EventWriter(run.events)
    w.status("running", max_steps=240)
    m = RunMonitor(run)
    m.poll()
    assert m.snapshot().max_steps == 240


def test_resumed_run_rewinds_repeated_steps(tmp_path):
    run = make_run(tmp_path)
    w = EventWriter(run.events)
    steps(w, 1, 21, loss=lambda s: 1.0)
    w.status("stopped")
    # resumed from the checkpoint at step 15: steps 15.. are logged again, with other losses
    w.status("running")
    steps(w, 15, 31, loss=lambda s: 0.5)
    m = RunMonitor(run, smoothing=0)
    m.poll()
    v = m.snapshot()
    xs, ys = v.loss_xy
    assert xs == tuple(float(s) for s in range(1, 31))
    assert ys[:14] == (1.0,) * 14 and ys[14:] == (0.5,) * 16
    assert v.smooth_xy == v.loss_xy and len(v.lr_xy[0]) == 30


def test_samples_grouped_by_step_and_checkpoints_with_size(tmp_path):
    run = make_run(tmp_path)
    w = EventWriter(run.events)
    (run.checkpoints / "mira-000100.safetensors").write_bytes(b"x" * 2048)
    for step in (100, 200):
        for i, prompt in enumerate(["zkx_mira, forest", "zkx_mira, bar"]):
            w.sample(step, prompt, f"samples/{step:06d}-{i}.png", index=i, seed=7 + i)
    w.checkpoint(100, "checkpoints/mira-000100.safetensors", time=1234.0)
    w.checkpoint(200, "checkpoints/mira-000200.safetensors")
    m = RunMonitor(run)
    m.poll()
    v = m.snapshot()
    assert [s.step for s in v.samples] == [100, 200]
    s100 = v.samples[0]
    assert [im.prompt for im in s100.images] == ["zkx_mira, forest", "zkx_mira, bar"]
    assert s100.images[1].path == run.path / "samples/000100-1.png" and s100.images[1].seed == 8
    assert not s100.images[0].exists
    c100, c200 = v.checkpoints
    assert (c100.step, c100.size, c100.time, c100.name) == (100, 2048, 1234.0, "mira-000100.safetensors")
    assert c200.size is None and format_size(c200.size) == "missing"


def test_backpressure_bounded_chunks_and_catch_up(tmp_path):
    run = make_run(tmp_path)
    w = EventWriter(run.events)
    steps(w, 1, 1001)
    m = RunMonitor(run, max_bytes=4096)
    first = m.poll()
    assert 0 < first < 1000 and m.pending  # a poll never swallows the whole file at once
    m.catch_up()
    assert not m.pending and m.snapshot().step == 1000 and m.snapshot().events == 1000


def test_catch_up_budget_stops_early(tmp_path):
    run = make_run(tmp_path)
    w = EventWriter(run.events)
    steps(w, 1, 2001)
    m = RunMonitor(run, max_bytes=512)
    m.catch_up(budget_s=0.0)  # one chunk, then out of budget
    assert m.pending and m.snapshot().events < 2000


def test_replaced_events_file_starts_over(tmp_path):
    run = make_run(tmp_path)
    w = EventWriter(run.events)
    steps(w, 1, 50)
    m = RunMonitor(run)
    m.poll()
    assert m.snapshot().step == 49
    w.close()
    run.events.write_text(json.dumps({"type": "step", "step": 3, "loss": 0.25}) + "\n")
    m.poll()
    v = m.snapshot()
    assert v.step == 3 and v.loss_xy == ((3.0,), (0.25,)) and v.events == 1


def test_100k_events_downsampled_for_charts(tmp_path):
    run = make_run(tmp_path)
    lines = [
        json.dumps({"type": "step", "step": s, "epoch": 0, "loss": 1.0 if s % 2 else 0.0, "lr": 1e-4, "time": s})
        for s in range(1, 100_001)
    ]
    run.events.write_text("\n".join(lines) + "\n")
    m = RunMonitor(run)
    m.catch_up()
    v = m.snapshot(points=300)
    xs, ys = v.loss_xy
    assert v.events == 100_000 and v.step == 100_000
    assert len(xs) <= 300 and xs[-1] == 100_000.0
    assert all(y == pytest.approx(0.5) for y in ys)  # buckets of an even size average 1/0 pairs
    assert len(v.lr_xy[0]) <= 300


def test_series_downsample_keeps_tail_and_means():
    s = Series()
    for i in range(1, 11):
        s.append(i, i)
    xs, ys = s.downsample(4)  # buckets of 3: [1,2,3] [4,5,6] [7,8,9] + [10]
    assert xs == (3.0, 6.0, 9.0, 10.0) and ys == (2.0, 5.0, 8.0, 10.0)
    assert s.downsample(100) == (tuple(map(float, range(1, 11))),) * 2
    assert s.rewind(8) == 3 and s.last == 7


def test_log_tail_keeps_last_lines_and_waits_for_line_end(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("one\ntwo\nthr")
    t = LogTail(log, keep=3)
    assert t.poll() == 2 and list(t.lines) == ["one", "two"]
    with open(log, "a") as fh:
        fh.write("ee\nfour\nprogress 1%\rprogress 50%\rprogress 100%\n")
    t.poll()
    assert list(t.lines) == ["three", "four", "progress 100%"]


def test_log_tail_of_a_big_log_reads_only_its_end(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    t = LogTail(log, keep=10)
    t.poll()
    assert list(t.lines) == [f"line {i}" for i in range(99_990, 100_000)]
    assert t.offset == log.stat().st_size


def test_monitor_log_tail_in_snapshot(tmp_path):
    run = make_run(tmp_path)
    run.log.write_text("starting\nloaded model\n")
    m = RunMonitor(run)
    m.poll()
    assert m.snapshot().log == ("starting", "loaded model")


def test_run_board_discovers_follows_and_forgets(tmp_path):
    a = make_run(tmp_path, "20261125-100000-a", max_steps=10)
    EventWriter(a.events).status("finished")
    board = RunBoard(tmp_path / "runs")
    assert board.discover()
    b = make_run(tmp_path, "20261125-110000-b")
    wb = EventWriter(b.events)
    steps(wb, 1, 4)
    assert board.discover() and not board.discover()
    board.poll()
    rows = board.rows()
    assert [r.run_id for r in rows] == ["20261125-110000-b", "20261125-100000-a"]  # newest first
    assert rows[0].step == 3 and rows[0].display_state == "dead" and rows[1].display_state == "finished"
    assert rows[1].max_steps == 10
    steps(wb, 4, 6)
    assert board.poll() == 2 and board.rows()[0].step == 5
    import shutil

    shutil.rmtree(a.path)
    assert board.discover() and [r.run_id for r in board.rows()] == ["20261125-110000-b"]
    assert board.monitor("20261125-100000-a") is None


def test_starting_run_alive_by_pid_before_it_takes_the_lock(tmp_path):
    import os

    run = make_run(tmp_path)
    EventWriter(run.events).status("starting")
    run.pid_file.write_text(str(os.getpid()))
    m = RunMonitor(run)
    m.poll()
    assert m.snapshot().display_state == "starting"
    run.pid_file.write_text("999999999")
    m.catch_up()
    assert m.snapshot().display_state == "dead"


def test_gpu_stats_with_and_without_nvml(monkeypatch):
    monkeypatch.setattr(mon, "_nvml_state", {})
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed -> ImportError
    assert mon.gpu_stats() is None
    # a fake NVML at the edge of the machine: one 80 GB GPU, half used, 73% busy
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=40 * 2**30, total=80 * 2**30),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=73),
        nvmlDeviceGetName=lambda h: b"NVIDIA H100",
    )
    monkeypatch.setattr(mon, "_nvml_state", {})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    (g,) = mon.gpu_stats()
    assert (g.name, g.mem_used_gb, g.mem_total_gb, g.util) == ("NVIDIA H100", 40.0, 80.0, 73)


def test_format_duration():
    assert format_duration(None) == "-"
    assert format_duration(65) == "1:05"
    assert format_duration(3725) == "1:02:05"


def test_elapsed_leaves_out_the_time_between_stop_and_resume(tmp_path):
    from lorawb.train.runfolder import summarize

    run = RunFolder(tmp_path / "r").create()
    with EventWriter(run.events) as ev:
        ev.emit("status", state="running", time=1000.0)
        ev.emit("step", step=1, epoch=0, loss=0.1, lr=1e-4, it_s=1.0, time=1010.0)
        ev.emit("status", state="stopped", time=1010.0)
        ev.emit("status", state="running", time=1100.0)  # resumed 90 s later
        ev.emit("step", step=2, epoch=0, loss=0.1, lr=1e-4, it_s=1.0, time=1105.0)
        ev.emit("status", state="finished", time=1105.0)
    m = RunMonitor(run)
    m.poll(check_alive=False)
    assert m.snapshot().elapsed == pytest.approx(15.0)
    assert summarize(run).elapsed == pytest.approx(15.0)


def test_skipped_images_are_in_the_snapshot(tmp_path):
    run = make_run(tmp_path)
    w = EventWriter(run.events)
    w.emit("skipped", images=[{"path": "2_a/ps.png", "reason": "not a PNG"}, {"path": "2_a/z.jpg", "reason": "empty"}])
    m = RunMonitor(run)
    m.poll()
    assert m.snapshot().skipped == (("2_a/ps.png", "not a PNG"), ("2_a/z.jpg", "empty"))
