"""The Train tab, driven with the Pilot against run folders the tests write and grow themselves."""

from __future__ import annotations

import asyncio
import fcntl
import time

import pytest
from textual.widgets import DataTable, Input, Static, TabbedContent, TextArea

from lorawb.train import form as F
from lorawb.train.events import EventWriter
from lorawb.train.runfolder import RunFolder
from lorawb.tui.app import LorawbApp
from lorawb.tui.tabs.train import TrainTab, short_id
from lorawb.tui.widgets.train_charts import SeriesChart
from lorawb.tui.widgets.train_samples import SampleStrip
from tests.tui.conftest import make_image, settle

RUN_A = "20261125-100000-base"
RUN_B = "20261125-110000-lr5e5"


def make_run(project, name, *, lr="1e-4", rank=8, max_steps=100) -> RunFolder:
    run = RunFolder(project.runs_dir / name).create()
    run.config.write_text(
        f"[train]\nmax_steps = {max_steps}\nlearning_rate = {lr}\n[network]\nrank = {rank}\n"
        '[sample]\nprompts = ["zkx_mira, forest", "zkx_mira, bar"]\n'
    )
    return run


def write_steps(w: EventWriter, start: int, stop: int, loss=lambda s: 1.0 / s, t0: float = 1000.0) -> None:
    for s in range(start, stop):
        w.step(s, s // 10, loss(s), 1e-4, 2.0, time=t0 + s / 2)


def write_samples(run: RunFolder, w: EventWriter, step: int) -> None:
    for i, ctx in enumerate(["forest", "bar"]):
        rel = f"samples/{step:06d}-{i}.png"
        make_image(run.path / rel, ctx, i, size=(64, 64))
        w.sample(step, f"zkx_mira, {ctx} @{step}", rel, index=i, seed=i)


async def wait_for(pilot, cond, timeout: float = 10.0) -> None:
    """Let the tab's timer-driven polls run until ``cond()`` holds."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)
    await settle(pilot)


def tab(app) -> TrainTab:
    return app.query_one(TrainTab)


def stats(app) -> str:
    return str(app.query_one("#train-stats", Static).render())


class FakeTrainer:
    """Holds run.lock like a live trainer process."""

    def __init__(self, run: RunFolder) -> None:
        self.fh = open(run.lock_file, "a+")  # noqa: SIM115
        fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def exit(self) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def test_short_id():
    assert short_id(RUN_B) == "lr5e5"
    assert short_id("20261125-110000") == "110000"


async def test_empty_project_says_how_to_start(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: "no runs yet" in str(app.query_one("#train-run", Static).render()))
        assert app.query_one("#train-runs", DataTable).row_count == 0


async def test_follows_a_growing_run_live(sample_like_project):
    project = sample_like_project
    run = make_run(project, RUN_A)
    w = EventWriter(run.events)
    w.status("running", time=1000.0)
    write_steps(w, 1, 11)
    trainer = FakeTrainer(run)
    app = LorawbApp(project)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            table = app.query_one("#train-runs", DataTable)
            await wait_for(pilot, lambda: table.row_count == 1 and tab(app).view is not None)
            assert [str(c) for c in table.get_row(RUN_A)[:3]] == ["10:00 base", "running", "10/100"]
            await pilot.press("m")
            assert app.query_one("#train-views", TabbedContent).active == "tv-monitor"
            assert "loss 0.1000" in stats(app) and "2.00 it/s" in stats(app)
            loss_chart = app.query_one("#chart-loss", SeriesChart)
            assert loss_chart.lines[0].xs[-1] == 10
            # the trainer keeps writing: the monitor follows without a key press
            write_steps(w, 11, 51)
            w.emit("val", step=50, val_loss=0.3)
            await wait_for(pilot, lambda: tab(app).view.step == 50)
            assert "loss 0.0200" in stats(app) and "val 0.3000" in stats(app)
            assert loss_chart.lines[0].xs[-1] == 50 and [ln.label for ln in loss_chart.lines][-1] == "val"
            assert "step 50/100" in str(app.query_one("#train-eta", Static).render())
            assert "ETA 0:25" in str(app.query_one("#train-eta", Static).render())  # 50 steps at 2 it/s
            assert str(table.get_row(RUN_A)[2]) == "50/100"
            # the trainer finishes
            w.status("finished")
            trainer.exit()
            trainer = None
            await wait_for(pilot, lambda: tab(app).view.display_state == "finished")
            assert str(table.get_row(RUN_A)[1]) == "finished"
            assert "ETA" not in str(app.query_one("#train-eta", Static).render())
    finally:
        if trainer:
            trainer.exit()


async def test_a_crashed_run_shows_dead_and_a_failed_one_its_error(sample_like_project):
    project = sample_like_project
    dead = make_run(project, RUN_A)
    w = EventWriter(dead.events)
    w.status("running")
    write_steps(w, 1, 5)
    w.checkpoint(step=4, path="checkpoints/x-000004.safetensors", resumable=True)
    write_steps(w, 5, 7)  # killed at step 6, after its checkpoint at 4
    failed = make_run(project, RUN_B)
    w2 = EventWriter(failed.events)
    w2.status("failed", error="CUDA out of memory", hint="lower train.batch_size or network.rank")
    app = LorawbApp(project)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        table = app.query_one("#train-runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        assert str(table.get_row(RUN_A)[1]) == "dead" and str(table.get_row(RUN_B)[1]) == "failed"
        await pilot.press("enter")  # the newest run (failed) is on top
        await wait_for(pilot, lambda: tab(app).view is not None and tab(app).view.run_id == RUN_B)
        assert "out of memory" in stats(app) and "lower train.batch_size" in stats(app)
        await pilot.press("r", "down", "enter")  # the killed run: it can go on from its last checkpoint
        await wait_for(pilot, lambda: tab(app).view.run_id == RUN_A)
        head = str(app.query_one("#train-run", Static).render())
        assert "process gone" in head and "resumable from step 4" in head


async def test_smoothing_keys_change_the_smoothed_curve(sample_like_project):
    project = sample_like_project
    run = make_run(project, RUN_A)
    w = EventWriter(run.events)
    write_steps(w, 1, 41, loss=lambda s: float(s % 2))
    w.status("finished")
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: tab(app).view is not None)
        await pilot.press("m")
        chart = app.query_one("#chart-loss", SeriesChart)
        smooth = chart.lines[1]
        assert smooth.label == "EMA 0.9" and 0.3 < smooth.ys[-1] < 0.7
        await pilot.press(*["minus"] * 6)  # 0.9 -> 0.0: the smoothed curve is the raw one
        await wait_for(pilot, lambda: tab(app).view.smoothing == 0.0)
        assert chart.lines[1].ys == chart.lines[0].ys and "EMA 0," in stats(app)
        await pilot.press("plus", "plus")
        await wait_for(pilot, lambda: tab(app).view.smoothing == 0.6)
        assert chart.lines[1].label == "EMA 0.6"


async def test_samples_step_back_and_follow_the_latest(sample_like_project):
    project = sample_like_project
    run = make_run(project, RUN_A)
    w = EventWriter(run.events)
    w.status("running")
    trainer = FakeTrainer(run)
    for step in (20, 40):
        write_steps(w, step - 19, step + 1)
        write_samples(run, w, step)
    app = LorawbApp(project)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            await wait_for(pilot, lambda: tab(app).view is not None and len(tab(app).view.samples) == 2)
            await pilot.press("p")
            strip = app.query_one(SampleStrip)

            def prompts() -> list[str]:
                return [str(s.render()) for s in strip.query(".prompt")]

            await wait_for(pilot, lambda: strip.shown is not None and strip.shown.step == 40)
            assert prompts() == ["zkx_mira, forest @40  (seed 0)", "zkx_mira, bar @40  (seed 1)"]
            assert "sample step 2/2" in str(strip.query_one(".where").render())
            await pilot.press("comma")
            assert strip.shown.step == 20
            await settle(pilot)
            assert prompts()[0].startswith("zkx_mira, forest @20")
            # a new sample step while looking back: the view stays where the person is
            write_steps(w, 41, 61)
            write_samples(run, w, 60)
            await wait_for(pilot, lambda: tab(app).view.step == 60)
            assert strip.shown.step == 20 and "sample step 1/3" in str(strip.query_one(".where").render())
            await pilot.press("greater_than_sign")
            assert strip.shown.step == 60
            # following the latest again: the next sample step shows by itself
            write_steps(w, 61, 81)
            write_samples(run, w, 80)
            await wait_for(pilot, lambda: strip.shown.step == 80)
            # images are drawn by the shared ImageView from thumbnails made in workers
            await settle(pilot)
            views = list(strip.query("ImageView"))
            assert len(views) == 2 and views[0].path == run.path / "samples/000080-0.png"
            assert views[0].query(".image")
    finally:
        trainer.exit()


async def test_checkpoints_and_log_tail(sample_like_project):
    project = sample_like_project
    run = make_run(project, RUN_A)
    w = EventWriter(run.events)
    write_steps(w, 1, 21)
    (run.checkpoints / "mira-000010.safetensors").write_bytes(b"0" * 4096)
    w.checkpoint(10, "checkpoints/mira-000010.safetensors")
    w.checkpoint(20, "checkpoints/mira-000020.safetensors")
    w.status("finished")
    run.log.write_text("loading model\nstep 1\n")
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: tab(app).view is not None)
        await pilot.press("c")
        table = app.query_one("#train-ckpts", DataTable)
        assert table.row_count == 2
        assert table.get_row_at(0)[:3] == ["10", "mira-000010.safetensors", "4.0 KB"]
        assert table.get_row_at(1)[2] == "missing"
        await pilot.press("l")
        assert tab(app).log_lines == ["loading model", "step 1"]
        with open(run.log, "a") as fh:
            fh.write("step 2\nhalf a li")
        await wait_for(pilot, lambda: len(tab(app).log_lines) == 3)
        assert tab(app).log_lines[-1] == "step 2"


async def test_compare_two_runs(sample_like_project):
    project = sample_like_project
    a = make_run(project, RUN_A)
    wa = EventWriter(a.events)
    write_steps(wa, 1, 31, loss=lambda s: 1.0)
    wa.status("finished")
    b = make_run(project, RUN_B, lr="5e-5")
    wb = EventWriter(b.events)
    write_steps(wb, 1, 21, loss=lambda s: 0.5)
    wb.status("finished")
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: tab(app).view is not None)
        await pilot.press("v")  # the selected (newest) run against the one before it
        diff = app.query_one("#compare-diff", DataTable)
        await wait_for(pilot, lambda: tab(app).comparison is not None)
        assert diff.get_row_at(0) == ["train.learning_rate", "5e-05", "0.0001"]
        head = str(app.query_one("#compare-head", Static).render())
        assert f"A {RUN_B}" in head and f"B {RUN_A}" in head and "at step 20: A 0.5000  B 1.0000" in head
        chart = app.query_one("#chart-compare", SeriesChart)
        assert [ln.label for ln in chart.lines] == ["A lr5e5", "B base"]
        assert len(chart.lines[0].xs) == 20 and len(chart.lines[1].xs) == 30
        # a third run with two changes: the tab says that makes the effect hard to read
        c = make_run(project, "20261125-120000-two", lr="5e-5", rank=16)
        EventWriter(c.events).status("finished")
        await pilot.press("r")
        table = app.query_one("#train-runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        table.move_cursor(row=table.get_row_index(RUN_A))
        await pilot.press("b")  # compare with base
        table.move_cursor(row=table.get_row_index("20261125-120000-two"))
        await pilot.pause()
        assert str(table.get_row(RUN_A)[0]).startswith("◆")
        await pilot.press("v")
        await wait_for(pilot, lambda: tab(app).comparison.a == "20261125-120000-two")
        assert tab(app).comparison.b == RUN_A
        assert "2 settings differ" in str(app.query_one("#compare-head", Static).render())


async def test_stop_needs_a_second_press_and_asks_the_run_to_stop(sample_like_project):
    project = sample_like_project
    run = make_run(project, RUN_A)
    w = EventWriter(run.events)
    w.status("running")
    write_steps(w, 1, 5)
    trainer = FakeTrainer(run)
    app = LorawbApp(project)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            await wait_for(pilot, lambda: tab(app).view is not None and tab(app).view.alive)
            await pilot.press("x")
            await settle(pilot)
            assert not run.stop_file.exists()
            await pilot.press("x")
            await wait_for(pilot, lambda: run.stop_file.exists())
    finally:
        trainer.exit()


async def test_keeps_up_with_a_fast_writer_and_a_big_file(sample_like_project):
    """100,000 events already there, then 20+ events/s: the tab catches up and stays current."""
    project = sample_like_project
    run = make_run(project, RUN_A, max_steps=200_000)
    import json

    lines = [json.dumps({"type": "step", "step": s, "loss": 0.1, "lr": 1e-4, "time": s}) for s in range(1, 100_001)]
    run.events.write_text("\n".join(lines) + "\n")
    w = EventWriter(run.events)
    trainer = FakeTrainer(run)
    app = LorawbApp(project)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            await wait_for(pilot, lambda: tab(app).view is not None and tab(app).view.step == 100_000, timeout=20)
            for s in range(100_001, 100_101):  # 100 events in ~1 s while the app polls
                w.step(s, 0, 0.05, 1e-4, 20.0)
                if s % 10 == 0:
                    await pilot.pause(0.1)
            await wait_for(pilot, lambda: tab(app).view.step == 100_100)
            await pilot.press("m")
            chart = app.query_one("#chart-loss", SeriesChart)
            assert len(chart.lines[0].xs) <= 400 and chart.lines[0].xs[-1] == 100_100
    finally:
        trainer.exit()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_every_view_fits(sample_like_project, size):
    project = sample_like_project
    run = make_run(project, RUN_A)
    w = EventWriter(run.events)
    write_steps(w, 1, 21)
    write_samples(run, w, 20)
    w.status("stopped")
    app = LorawbApp(project)
    async with app.run_test(size=size) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: tab(app).view is not None)
        for key, pane in (("m", "monitor"), ("p", "samples"), ("c", "checkpoints"), ("l", "log"), ("v", "compare")):
            await pilot.press(key)
            await settle(pilot)
            assert app.query_one("#train-views", TabbedContent).active == f"tv-{pane}"
            assert app.focused is not None and tab(app) in app.focused.ancestors_with_self
        await pilot.press("m")
        await settle(pilot)
        chart = app.query_one("#chart-loss", SeriesChart)
        assert chart.size.height >= 8 and chart.size.width >= 40


async def test_form_marks_changes_and_validates(sample_like_project):
    project = sample_like_project
    make_run(project, RUN_A, lr="1e-4")
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: tab(app).view is not None)
        await pilot.press("n")
        await settle(pilot)
        form = app.query_one("#train-form")
        lr = app.query_one("#f-train-learning_rate", Input)
        status = app.query_one("#form-status", Static)
        assert lr.value == "0.0001" and app.query_one("#f-network-rank", Input).value == "8"
        assert f"same settings as {RUN_A}" in str(status.render())
        # one change: marked on its field, written into the TOML
        lr.value = "5e-5"
        await settle(pilot)
        assert str(app.query_one("#f-train-learning_rate-mark", Static).render()) == "≠ 0.0001"
        assert "learning_rate = 5e-05" in form.toml_text
        assert f"1 setting differs from {RUN_A}: train.learning_rate" in str(status.render())
        # a second change: the form warns
        app.query_one("#f-network-rank", Input).value = "16"
        await settle(pilot)
        assert "⚠ 2 settings differ" in str(status.render())
        # an invalid value: the field is marked and the form says what is expected
        batch = app.query_one("#f-train-batch_size", Input)
        batch.value = "0"
        await settle(pilot)
        assert batch.has_class("-invalid")
        assert "train.batch_size" in str(status.render()) and "must be at least 1" in str(status.render())
        batch.value = "two"
        await settle(pilot)
        assert "needs a whole number" in str(status.render())
        batch.value = "2"
        await settle(pilot)
        assert not batch.has_class("-invalid") and "3 settings differ" in str(status.render())
        # editing the TOML updates the fields
        toml = app.query_one("#form-toml", TextArea)
        toml.load_text(form.toml_text.replace("max_steps = 100", "max_steps = 250"))
        await settle(pilot)
        assert app.query_one("#f-train-max_steps", Input).value == "250"
        # an unknown key in the TOML is named with its line
        toml.load_text(form.toml_text.replace("[train]\n", "[train]\nlearnign_rate = 1\n"))
        await settle(pilot)
        text = str(status.render())
        assert "train.learnign_rate: unknown key" in text and "TOML line" in text
        # prompts: one per line, written as a list
        toml.load_text(form.toml_text.replace("learnign_rate = 1\n", ""))
        await settle(pilot)
        assert "4 settings differ" in str(status.render())  # lr, rank, batch, steps
        app.query_one("#form-prompts", TextArea).load_text("{trigger}, forest\n{trigger}, spaceship\n")
        await settle(pilot)
        assert 'prompts = ["{trigger}, forest", "{trigger}, spaceship"]' in form.toml_text
        assert "≠" in str(app.query_one("#f-sample-prompts-mark", Static).render())


async def test_form_preservation_fields_say_what_they_need(sample_like_project):
    project = sample_like_project
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "n")
        await settle(pilot)
        form = app.query_one("#train-form")
        status = app.query_one("#form-status", Static)
        app.query_one("#f-train-preservation", Input).value = "output"
        await settle(pilot)
        assert "needs the class word" in str(status.render()) and "TOML line" in str(status.render())
        assert app.query_one("#f-train-preservation_class", Input).has_class("-invalid")
        app.query_one("#f-train-preservation_class", Input).value = "woman"
        await settle(pilot)
        assert 'preservation_class = "woman"' in form.toml_text
        assert "⚠ 2 settings differ" in str(status.render())
        assert "train.preservation" in str(status.render())


async def test_form_preset_writes_its_memory_settings(sample_like_project):
    from textual.widgets import Select

    project = sample_like_project
    make_run(project, RUN_A, lr="1e-4")
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "n")
        await settle(pilot)
        form = app.query_one("#train-form")
        preset = app.query_one("#form-preset", Select)
        assert preset.is_blank() and preset.region.width > 0  # shown at 80 columns
        names = [p.name for p in F.PRESETS]
        preset.value = names.index("SDXL 12 GB")
        await settle(pilot)
        text = form.toml_text
        assert 'optimizer = "adamw8bit"' in text and "gradient_checkpointing = true" in text
        assert "resolution = 1024" in text and 'mixed_precision = "bf16"' in text
        assert app.query_one("#f-dataset-resolution", Input).value == "1024"  # the fields follow the TOML
        assert app.query_one("#f-train-batch_size", Input).value == "1"
        assert "settings differ" in str(app.query_one("#form-status", Static).render())
        assert form.error is None  # a valid config: ctrl+s would start it
        preset.value = names.index("SDXL 24 GB")
        await settle(pilot)
        assert "gradient_checkpointing = false" in form.toml_text and 'optimizer = "adamw"' in form.toml_text
        assert app.query_one("#f-train-batch_size", Input).value == "2"


async def test_form_start_with_invalid_config_starts_nothing(sample_like_project):
    project = sample_like_project
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "n")
        await settle(pilot)
        app.query_one("#f-train-max_steps", Input).value = "0"
        app.query_one("#f-train-epochs", Input).value = "0"
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "steps and epochs are both 0" in str(app.query_one("#form-status", Static).render())
        assert list(project.runs_dir.iterdir()) == []


async def test_polling_pauses_while_the_tab_is_hidden(sample_like_project):
    project = sample_like_project
    run = make_run(project, RUN_A)
    w = EventWriter(run.events)
    write_steps(w, 1, 3)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await asyncio.sleep(0.8)  # timers tick, but the Train tab is not on screen
        assert tab(app).board.monitors == []
        await pilot.press("3")
        await wait_for(pilot, lambda: tab(app).view is not None)


# --------------------------------------------------------------------------- real runs
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from lorawb.toyworld.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd1", family="sd1", seed=0)


@pytest.mark.slow
async def test_start_a_real_detached_run_from_the_form_and_watch_it_finish(tmp_path, tiny_model):
    from lorawb.core.project import Project
    from tests.train.conftest import make_project

    project = Project.load(make_project(tmp_path / "proj", tiny_model, n_images=4))
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "n")
        await settle(pilot)
        status = app.query_one("#form-status", Static)
        assert "same settings as lorawb.toml" in str(status.render())
        for key, value in (("train-max_steps", "4"), ("sample-every_n_steps", "2"), ("save-every_n_steps", "2")):
            app.query_one(f"#f-{key}", Input).value = value
        app.query_one("#form-prompts", TextArea).load_text("{trigger}, forest")
        app.query_one("#form-name", Input).value = "from-tab"
        await settle(pilot)
        await pilot.press("ctrl+s")
        # the tab selects the new run and shows its monitor while the detached process trains
        await wait_for(pilot, lambda: tab(app).selected is not None and tab(app).selected.endswith("from-tab"), 30)
        assert app.query_one("#train-views", TabbedContent).active == "tv-monitor"
        run = RunFolder(project.runs_dir / tab(app).selected)
        await wait_for(pilot, lambda: tab(app).view is not None and tab(app).view.ended, timeout=240)
        v = tab(app).view
        assert v.display_state == "finished", (v.error, (run.path / "worker.out").read_text()[-2000:])
        assert v.step == 4 and v.max_steps == 4 and len(v.loss_xy[0]) == 4
        assert [s.step for s in v.samples] == [2, 4] and v.samples[0].images[0].prompt == "zkx_mira, forest"
        assert [c.step for c in v.checkpoints] == [2, 4] and all(c.size for c in v.checkpoints)
        assert str(app.query_one("#train-runs", DataTable).get_row(run.id)[1]) == "finished"
        # the run's frozen config has what the form said
        frozen = run.config.read_text()
        assert "max_steps = 4" in frozen and "every_n_steps = 2" in frozen
        # the form now prefills from this run, unchanged
        await pilot.press("n")
        await settle(pilot)
        assert f"same settings as {run.id}" in str(app.query_one("#form-status", Static).render())
        # the app closing does not end anything: the run is a separate process and already done
        assert not run.is_alive()


@pytest.mark.slow
async def test_stop_and_resume_a_real_run_from_the_tab(tmp_path, tiny_model):
    from lorawb.core.project import Project
    from lorawb.train.config import resolve_config
    from lorawb.train.process import start_run, stop_run
    from tests.train.conftest import make_project

    project = Project.load(make_project(tmp_path / "proj", tiny_model, n_images=4))
    run = start_run(project, resolve_config(project, overrides=["train.max_steps=100000"]), detach=True)
    app = LorawbApp(project)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            await wait_for(pilot, lambda: tab(app).view is not None and tab(app).view.step >= 2, timeout=120)
            assert tab(app).view.display_state == "running"
            await pilot.press("x", "x")
            await wait_for(pilot, lambda: tab(app).view.display_state == "stopped", timeout=60)
            stopped_at = tab(app).view.step
            assert tab(app).view.checkpoints[-1].step == stopped_at  # it saved before it stopped
            await pilot.press("R")
            await wait_for(pilot, lambda: tab(app).view.step > stopped_at + 1, timeout=120)
            assert tab(app).view.display_state == "running"
            xs = tab(app).view.loss_xy[0]
            assert list(xs) == sorted(set(xs))  # the resumed curve continues, no repeated steps
            await pilot.press("x", "x")
            await wait_for(pilot, lambda: tab(app).view.display_state == "stopped", timeout=60)
    finally:
        if run.is_alive():
            stop_run(run, wait=30)


async def test_a_failing_poll_is_reported_and_polling_goes_on(sample_like_project, monkeypatch):
    from lorawb.train.monitor import RunBoard

    project = sample_like_project
    run = make_run(project, RUN_A)
    write_steps(EventWriter(run.events), 1, 3)
    real_rows, calls = RunBoard.rows, []

    def flaky_rows(self):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real_rows(self)

    monkeypatch.setattr(RunBoard, "rows", flaky_rows)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        end = time.monotonic() + 10
        while tab(app).view is None and time.monotonic() < end:
            await pilot.pause(0.05)
        assert tab(app).view is not None and len(calls) >= 2
        assert any("boom" in str(n.message) for n in app._notifications)


async def test_form_picks_up_a_run_started_elsewhere(sample_like_project):
    project = sample_like_project
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "n")
        await settle(pilot)
        status = app.query_one("#form-status", Static)
        assert "same settings as lorawb.toml" in str(status.render())
        make_run(project, RUN_A, lr="3e-4")  # e.g. `lorawb train` in another terminal
        await pilot.press("escape", "r")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert f"same settings as {RUN_A}" in str(status.render())
        assert app.query_one("#f-train-learning_rate", Input).value == "0.0003"
        # an edited form keeps its source and edits when another run appears
        app.query_one("#f-train-learning_rate", Input).value = "1e-3"
        await settle(pilot)
        make_run(project, RUN_B)
        await pilot.press("escape", "r")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert f"1 setting differs from {RUN_A}" in str(status.render())
        assert app.query_one("#f-train-learning_rate", Input).value == "1e-3"


async def test_a_bad_key_in_lorawb_toml_is_shown_in_the_form_as_the_cli_says_it(sample_like_project, capsys):
    """`batch_size = "four"`: the form keeps lorawb.toml's other settings and names file, line and key."""
    from lorawb.cli import main
    from lorawb.core.project import Project

    text = sample_like_project.config_path.read_text()
    assert "batch_size = 1\n" in text and "max_steps = 1000\n" in text
    text = text.replace("batch_size = 1\n", 'batch_size = "four"\n').replace("max_steps = 1000", "max_steps = 321")
    sample_like_project.config_path.write_text(text)
    project = Project.load(sample_like_project.root)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "four" in t)
    assert main(["train", str(project.root)]) == 2
    cli = capsys.readouterr().err
    assert f"lorawb.toml:{line}: train.batch_size:" in cli
    app = LorawbApp(project)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3", "n")
        await settle(pilot)
        status = str(app.query_one("#form-status", Static).render())
        assert f"lorawb.toml:{line}: train.batch_size:" in status
        batch = app.query_one("#f-train-batch_size", Input)
        assert batch.value == "four" and batch.has_class("-invalid")  # shown as written, not a silent default
        assert app.query_one("#f-train-max_steps", Input).value == "321"  # the good settings are kept
        assert 'batch_size = "four"' in app.query_one("#train-form").toml_text
        assert any("lorawb.toml" in str(n.message) and "train.batch_size" in str(n.message) for n in app._notifications)
        batch.value = "4"  # fixed in the form: it can start
        await settle(pilot)
        assert not batch.has_class("-invalid")
        assert "✗" not in str(app.query_one("#form-status", Static).render())


async def test_choosing_a_model_in_the_form_takes_its_resolution_and_bucket_step(sample_like_project, tmp_path):
    from lorawb.toyworld.tiny import build_tiny_model
    from lorawb.train import form as F

    model = build_tiny_model(tmp_path / "tiny-64", image_size=64)
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3", "n")
        await settle(pilot)
        form = app.query_one("#train-form")
        assert app.query_one("#f-dataset-resolution", Input).value == "512"
        app.query_one("#form-toml", TextArea).load_text(F.set_in_toml(form.toml_text, "model.path", str(model)))
        await settle(pilot)
        assert app.query_one("#f-dataset-resolution", Input).value == "64"
        assert "bucket_step = 16" in form.toml_text
        assert any("model's recommendation (lorawb_model.json)" in str(n.message) for n in app._notifications)


async def test_the_form_shows_the_memory_plan_as_settings_change(tmp_path, tiny_flux):
    """The plan of the form's settings (the peak and what makes it fit the card) follows the form:
    a preset's card becomes the budget, an invalid setting puts it on hold."""
    from textual.widgets import Select

    from tests.train.conftest import make_project

    root = make_project(tmp_path / "p", tiny_flux, n_images=2)
    from lorawb.core.project import Project

    app = LorawbApp(Project.load(root))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "n")
        await settle(pilot)
        plan = app.query_one("#form-plan", Static)

        async def shown(needle: str) -> str:
            for _ in range(100):
                await pilot.pause(0.1)
                await app.workers.wait_for_complete()
                if needle in str(plan.render()):
                    break
            return str(plan.render())

        assert "memory plan (Flux.1" in await shown("fits")
        assert "activations estimated" in str(plan.render()) and "fits 24 GB" in str(plan.render())
        preset = app.query_one("#form-preset", Select)
        preset.value = [p.name for p in F.PRESETS].index("Flux 16 GB")  # an NF4 base: the plan follows it
        assert "fits 16 GB" in await shown("16 GB")
        app.query_one("#f-train-batch_size", Input).value = "0"
        assert "fix the settings first" in await shown("fix the settings")
