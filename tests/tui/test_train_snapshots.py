"""The Train tab's monitor at 80x24, pinned as an SVG snapshot (update with --snapshot-update)."""

from __future__ import annotations

import math
import os

from lorawb.train import monitor
from lorawb.train.events import EventWriter
from lorawb.train.runfolder import RunFolder
from lorawb.tui.app import LorawbApp
from tests.tui.conftest import build_project, settle


def test_train_monitor_80x24(snap_compare, tmp_path, monkeypatch):
    monkeypatch.setattr(monitor, "_nvml_state", {"failed": True})  # the same picture with or without a GPU
    project = build_project(tmp_path / "snap")
    os.utime(project.root, ns=(0, 0))
    run = RunFolder(project.runs_dir / "20261125-100000-base").create()
    run.config.write_text("[train]\nmax_steps = 300\nlearning_rate = 1e-4\n")
    w = EventWriter(run.events)
    w.status("running", time=1000.0)
    for s in range(1, 201):
        loss = 0.2 * math.exp(-s / 60) + 0.05 + 0.03 * math.sin(s * 1.7)
        w.step(s, s // 50, loss, 1e-4 * min(1.0, s / 40), 2.5, time=1000.0 + s / 2.5, mem_gb=3.1)
        if s % 50 == 0:
            w.emit("val", step=s, val_loss=0.12 + 0.1 * math.exp(-s / 80), time=1000.0 + s / 2.5)
    w.status("stopped", time=1080.0)
    w.close()

    async def run_before(pilot):
        await pilot.press("3")
        for _ in range(40):
            await pilot.pause(0.05)
            if pilot.app.query_one("TrainTab").view is not None:
                break
        await pilot.press("m")
        await settle(pilot)

    assert snap_compare(LorawbApp(project), terminal_size=(80, 24), run_before=run_before)
