"""Sweeps: the plan (one change at a time, or every combination; each run differs from the base in
exactly the settings it names), the verdict's arithmetic, and a real sweep on the sample project
(2 learning rates, 60 steps, a small matrix, two lanes): each run has its matrix, the report ranks
run × checkpoint × weight, names the best with the seed-to-seed spread, and draws the picture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorawb.cli import main as cli
from lorawb.core.project import Project
from lorawb.errors import ConfigError
from lorawb.sweep.plan import SweepError, plan_sweep
from lorawb.sweep.report import Candidate, Entry, SweepReport
from lorawb.train.compare import config_diff

SMALL_MATRIX = """\
[matrix]
run = ""
prompt = "{trigger}, {context}"
controls = ["red hair, green outfit, beach"]
cfg = 1.5
steps = 10

[axes]
checkpoint = [30, 60]
weight = [0, 1]
context = ["forest", "beach"]
seed = [0, 1]
"""


def diff_keys(base, cfg) -> list[str]:
    return [row.key for row in config_diff(base.model_dump(mode="json"), cfg.model_dump(mode="json"))]


def test_one_change_at_a_time_around_the_base_or_every_combination(sample_project):
    from lorawb.train.config import resolve_config

    project = Project.load(sample_project)
    base = resolve_config(project)
    vary = ["train.learning_rate=1e-4,2e-4", "network.rank=4,16"]
    plan = plan_sweep(project, "s", vary)
    assert [v.label for v in plan.variants] == ["learning_rate=1e-4", "learning_rate=2e-4", "rank=4", "rank=16"]
    assert [diff_keys(base, c) for c in plan.configs] == [["train.learning_rate"]] * 2 + [["network.rank"]] * 2
    product = plan_sweep(project, "s", vary, product=True)
    assert len(product.variants) == 4 and product.variants[0].label == "learning_rate=1e-4 rank=4"
    assert all(len(diff_keys(base, c)) == 2 for c in product.configs)
    # the base's own value (0.0005 in the sample's lorawb.toml) is the base run, named so, and made once
    with_base = plan_sweep(project, "s", ["train.learning_rate=5e-4,1e-3", "network.rank=8,16"])
    assert [v.label for v in with_base.variants] == ["learning_rate=5e-4 (base)", "learning_rate=1e-3", "rank=16"]
    assert diff_keys(base, with_base.configs[0]) == []


def test_a_sweep_refuses_what_is_not_one_setting_or_not_new(sample_project):
    project = Project.load(sample_project)
    with pytest.raises(ConfigError, match="train.learnin_rate"):
        plan_sweep(project, "s", ["train.learnin_rate=1e-4,2e-4"])
    with pytest.raises(ConfigError, match="KEY=VALUE,VALUE"):
        plan_sweep(project, "s", ["train.learning_rate"])
    with pytest.raises(ConfigError, match="fewer than two"):
        plan_sweep(project, "s", ["train.learning_rate=5e-4"])
    (sample_project / "sweeps" / "taken").mkdir(parents=True)
    with pytest.raises(SweepError, match="already a sweep 'taken'"):
        plan_sweep(project, "taken", ["train.learning_rate=1e-4,2e-4"])


def candidate(label: str, net: float, spread: float | None, step: int = 60) -> Candidate:
    return Candidate(label, "r", "m", f"step {step}", step, 1.0, net, 0.8, 0.0, None, 0, 8, net, spread)


def report_of(*cands: Candidate) -> SweepReport:
    entries = [Entry(label, {}, "1", "2") for label in dict.fromkeys(c.label for c in cands)]
    return SweepReport("s", Path("."), {}, entries, list(cands), "toy-world reader", "")


def test_the_verdict_weighs_the_margin_against_the_seed_to_seed_spread():
    clear = report_of(
        candidate("lr=3e-3", 0.70, 0.05), candidate("lr=3e-3", 0.65, 0.02, 30), candidate("lr=1e-4", 0.40, 0.08)
    )
    assert clear.rival.label == "lr=1e-4"  # the best of the *other* setting, not the same run's other checkpoint
    assert clear.margin == pytest.approx(0.30) and clear.spread == 0.08 and clear.beats_spread
    assert "the margin 0.300 is larger than the seed-to-seed spread (0.080): lr=3e-3 is better" in clear.verdict()
    close = report_of(candidate("a", 0.50, 0.10), candidate("b", 0.45, 0.02))
    assert close.beats_spread is False and "within the seed-to-seed spread (0.100)" in close.verdict()
    one_seed = report_of(candidate("a", 0.50, None), candidate("b", 0.45, None))
    assert one_seed.beats_spread is None and "one seed only" in one_seed.verdict()


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, sample_pristine):
    """The sample project with a sweep `lr` of 2 learning rates (60 steps, the small matrix) run to
    the end on two lanes; (project folder, queue folder). Run once for the tests below."""
    from lorawb.toyworld import check
    from tests.conftest import wait_for
    from tests.queue.conftest import all_ended, stop_runner_and_jobs

    tmp = tmp_path_factory.mktemp("sweep")
    project = check.copy_sample_project(tmp / "sample_project", source=sample_pristine)
    qdir = tmp / "state" / "queue"
    spec = tmp / "small.toml"
    spec.write_text(SMALL_MATRIX, encoding="utf-8")
    fixed = ["train.max_steps=60", "save.every_n_steps=30", "sample.every_n_steps=0", "sample.at_start=false"]
    sets = [w for s in fixed for w in ("--set", s)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORAWB_STATE_DIR", str(tmp / "state"))
        mp.setenv("XDG_CONFIG_HOME", str(tmp / "config"))
        mp.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # two lanes: the two runs train at once
        try:
            vary = ["--vary", "train.learning_rate=1e-4,3e-3"]
            assert cli(["sweep", str(project), "lr", *vary, "--matrix", str(spec), *sets]) == 0
            wait_for(lambda: all_ended(qdir), timeout=400)
            yield project, qdir
        finally:
            stop_runner_and_jobs(qdir)


@pytest.mark.slow
def test_a_sweep_on_the_sample_ranks_run_checkpoint_and_weight_and_names_the_best(
    finished_sweep, tmp_path, monkeypatch, capsys
):
    from lorawb.matrix.folder import MatrixFolder, read_status
    from lorawb.queue import store
    from lorawb.sweep.plan import read_members
    from lorawb.train.compare import read_config
    from lorawb.train.runfolder import RunFolder, summarize

    sample_project, qdir = finished_sweep
    monkeypatch.setenv("LORAWB_STATE_DIR", str(qdir.parent))
    q = store.load(qdir)
    assert [j.state for j in q.jobs] == ["finished"] * 4, [(j.title, j.error) for j in q.jobs]
    assert [(j.kind, j.after) for j in q.jobs] == [("train", ""), ("matrix", "1"), ("train", ""), ("matrix", "3")]

    sweep = sample_project / "sweeps" / "lr"
    members = read_members(sweep)
    runs = [RunFolder(Path(members[(label, "train")])) for label in ("learning_rate=1e-4", "learning_rate=3e-3")]
    assert [row.key for row in config_diff(read_config(runs[0]), read_config(runs[1]))] == ["train.learning_rate"]
    for label, run in zip(("learning_rate=1e-4", "learning_rate=3e-3"), runs, strict=True):
        matrix = MatrixFolder(Path(members[(label, "matrix")]))
        assert f'run = "{run.id}"' in matrix.spec.read_text()
        st = read_status(matrix)
        assert st.state == "finished" and len(matrix.done_ids()) == 18
    a, b = (summarize(r) for r in runs)  # both trained at once, on lanes 0 and 1
    assert a.started < b.updated and b.started < a.updated
    log = (qdir / "runner.log").read_text()
    assert "job 1 started on lane 0" in log and "job 3 started on lane 1" in log

    p = str(sample_project)
    assert cli(["sweep", "report", p, "lr", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ranking = data["ranking"]
    assert len(ranking) == 4  # 2 runs × 2 checkpoints × weight 1 (weight 0 is the base model)
    assert {(c["label"], c["checkpoint"], c["weight"]) for c in ranking} == {
        (label, f"step {s}", 1.0) for label in ("learning_rate=1e-4", "learning_rate=3e-3") for s in (30, 60)
    }
    nets = [c["net"] for c in ranking]
    assert nets == sorted(nets, reverse=True)
    assert all(len(c["by_seed"]["net"]) == 2 for c in ranking)  # two seeds each: a spread
    best = data["best"]
    assert best["label"] == "learning_rate=3e-3"  # 60 steps at 1e-4 barely move the toy base model
    assert data["beats_spread"] is not None and data["spread"] is not None
    verdict = data["verdict"]
    assert verdict.startswith(f"best: learning_rate=3e-3 at {best['checkpoint']}, weight 1")
    assert "seed-to-seed spread" in verdict and "next setting: learning_rate=1e-4" in verdict

    png = tmp_path / "lr.png"
    assert cli(["sweep", "report", p, "lr", "--out", str(png)]) == 0
    text = capsys.readouterr().out
    assert "ranked by identity − leak (scores measured by the toy-world reader" in text
    from PIL import Image

    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 800 and im.height > 500


@pytest.mark.slow
async def test_the_sweeps_view_shows_the_ranking_the_verdict_and_a_chart(finished_sweep):
    from textual.widgets import DataTable, Static

    from lorawb.tui.app import LorawbApp
    from lorawb.tui.widgets.train_charts import SeriesChart
    from tests.tui.test_train_tab import wait_for

    project, _qdir = finished_sweep
    app = LorawbApp(Project.load(project))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # mounted (a key pressed before may find no focus)
        await pilot.press("3")
        await pilot.pause()  # the Train tab has focus before its keys (Triage has an `s` too)
        await pilot.press("s")
        table = app.query_one("#sweep-rank", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4, timeout=20)
        assert str(table.get_row_at(0)[1]) == "learning_rate=3e-3"
        verdict = str(app.query_one("#sweep-verdict", Static).render())
        assert verdict.startswith("best learning_rate=3e-3 at step ") and "seed spread" in verdict
        chart = app.query_one("#sweep-chart", SeriesChart)
        assert [line.label for line in chart.lines] == ["learning_rate=1e-4", "learning_rate=3e-3"]
        assert list(chart.lines[0].xs) == [30, 60]
        assert chart.title.startswith("identity − leak by checkpoint step at weight 1")
        await pilot.press("i")
        assert chart.title.startswith("identity by checkpoint step")


def test_the_verdict_says_when_the_margin_is_within_the_prompt_to_prompt_spread():
    a, b = candidate("a", 0.60, 0.02), candidate("b", 0.45, 0.03)
    a.prompt_spread, b.prompt_spread, a.ceiling = 0.20, 0.05, 0.8
    text = report_of(a, b).verdict()
    assert "larger than the seed-to-seed spread (0.030)" in text
    assert "but within the prompt-to-prompt spread (0.200)" in text
    assert "identity 0.60 · dataset 0.80 (75%)" in text
