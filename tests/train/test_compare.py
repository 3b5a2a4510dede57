"""Comparing two runs: config diff rows and the loss overlay data."""

from __future__ import annotations

import pytest

from lorawb.train.compare import MISSING, compare_runs, config_diff, flatten, format_value, read_config
from lorawb.train.events import EventWriter
from lorawb.train.monitor import RunMonitor
from lorawb.train.runfolder import RunFolder

CONFIG = """\
[model]
path = "models/tiny"

[network]
rank = {rank}
alpha = 8.0

[train]
max_steps = {steps}
learning_rate = {lr}
batch_size = 1

[sample]
prompts = ["{{trigger}}, forest", "{{trigger}}, bar"]
"""


def make_run(tmp_path, name, *, rank=8, lr="1e-4", steps=100, losses=()):
    run = RunFolder(tmp_path / "runs" / name).create()
    run.config.write_text(CONFIG.format(rank=rank, lr=lr, steps=steps))
    w = EventWriter(run.events)
    for i, loss in enumerate(losses, 1):
        w.step(i, 0, loss, 1e-4, 1.0)
    w.status("finished")
    w.close()
    return run


def test_flatten_and_diff_rows():
    a = {"train": {"learning_rate": 1e-4, "batch_size": 1}, "network": {"rank": 8}, "only_a": 1}
    b = {"train": {"learning_rate": 5e-5, "batch_size": 1.0}, "network": {"rank": 8, "dora": True}}
    assert flatten(a) == {"train.learning_rate": 1e-4, "train.batch_size": 1, "network.rank": 8, "only_a": 1}
    rows = config_diff(a, b)
    assert [tuple(r) for r in rows] == [
        ("train.learning_rate", 1e-4, 5e-5),
        ("only_a", 1, MISSING),
        ("network.dora", MISSING, True),
    ]
    assert config_diff(a, a) == []
    assert [r.key for r in config_diff(a, b, ignore=("only_a", "network"))] == ["train.learning_rate"]


def test_true_is_not_one():
    assert [r.key for r in config_diff({"x": True}, {"x": 1})] == ["x"]


def test_format_value():
    assert format_value(MISSING) == "-"
    assert format_value(True) == "true"
    assert format_value(1e-4) == "0.0001"
    assert format_value(["a", 2]) == "[a, 2]"
    assert format_value("") == "''"


def test_compare_runs_diff_and_overlay(tmp_path):
    a = make_run(tmp_path, "20261125-100000-a", losses=[1.0] * 50)
    b = make_run(tmp_path, "20261125-110000-b", lr="5e-5", rank=16, losses=[0.5] * 30)
    c = compare_runs(a, b, smoothing=0.0)
    assert (c.a, c.b) == (a.id, b.id)
    assert [tuple(r) for r in c.diff] == [("network.rank", 8, 16), ("train.learning_rate", 1e-4, 5e-5)]
    ca, cb = c.curves
    assert len(ca.smooth[0]) == 50 and len(cb.smooth[0]) == 30
    assert ca.final_loss == 1.0 and cb.final_loss == 0.5 and cb.min_loss == 0.5
    assert ca.state == "finished"
    assert c.common_step == 30 and c.loss_at_common == (1.0, 0.5)


def test_compare_accepts_followed_monitors(tmp_path):
    a = make_run(tmp_path, "a", losses=[0.3, 0.2])
    b = make_run(tmp_path, "b", steps=200, losses=[0.4])
    ma = RunMonitor(a, smoothing=0)
    ma.poll()
    c = compare_runs(ma, b)
    assert [tuple(r) for r in c.diff] == [("train.max_steps", 100, 200)]
    assert c.curves[0].raw == ((1.0, 2.0), (0.3, 0.2))
    assert c.loss_at_common[0] == pytest.approx(0.3)


def test_run_without_config_compares_as_empty(tmp_path):
    a = make_run(tmp_path, "a")
    b = RunFolder(tmp_path / "runs" / "b").create()
    assert read_config(b) == {}
    c = compare_runs(a, b)
    assert all(r.b is MISSING for r in c.diff) and len(c.diff) == len(flatten(read_config(a)))
    assert c.common_step is None and c.loss_at_common == (None, None)


def test_prior_method_and_settings_older_runs_lack(tmp_path):
    from lorawb.train.compare import prior_method

    old = make_run(tmp_path, "old", losses=[1.0, 0.9])
    new = make_run(tmp_path, "new", losses=[1.0, 0.8])
    new.config.write_text(
        new.config.read_text().replace("[train]\n", '[train]\npreservation = "output"\npreservation_class = "woman"\n')
        + '\n[dataset]\nreg_path = "none"\nprior_loss_weight = 1.0\n'
    )
    cmp = compare_runs(old, new, points=2)
    # reg_path "none" and prior_loss_weight 1.0 are what the old run did: not differences
    assert [r.key for r in cmp.diff] == ["train.preservation", "train.preservation_class"]
    assert cmp.regularisation == ("none", "output preservation 'woman' (weight 1)")
    assert prior_method({"dataset": {"reg_path": "/p/reg", "prior_loss_weight": 0.5}}) == "reg images reg/ (weight 0.5)"


@pytest.mark.slow
def test_a_run_records_its_dataset_and_compare_names_the_files_that_changed(tmp_path, tiny_sd1, capsys):
    """Every run writes runs/<id>/dataset.json (image and caption hashes, repeats): two runs of the same
    config then say which files were added and re-captioned, and a fingerprint of each set."""
    import json

    from lorawb.cli import main
    from lorawb.core.project import Project
    from lorawb.train.config import resolve_config
    from lorawb.train.process import start_run
    from tests.train.conftest import make_project, write_images

    root = make_project(tmp_path / "p", tiny_sd1, n_images=3)
    one = start_run(
        Project.load(root), resolve_config(Project.load(root), overrides=["train.max_steps=1"]), detach=False
    )
    rows = json.loads((one.path / "dataset.json").read_text())["images"]
    assert [r["path"] for r in rows] == ["2_zkx_mira/img_000.png", "2_zkx_mira/img_001.png", "2_zkx_mira/img_002.png"]
    assert all(len(r["sha256"]) == 64 and r["caption_sha256"] and r["repeats"] == 2 for r in rows)
    write_images(root / "dataset" / "2_zkx_mira", 1, start=3)
    (root / "dataset" / "2_zkx_mira" / "img_001.txt").write_text("zkx_mira, blue outfit, forest", encoding="utf-8")
    two = start_run(
        Project.load(root), resolve_config(Project.load(root), overrides=["train.max_steps=1"]), detach=False
    )
    capsys.readouterr()
    assert main(["compare", one.id, two.id, "-p", str(root)]) == 0
    out = capsys.readouterr().out
    assert "files added" in out and "img_003.png" in out
    assert "files changed" in out and "img_001.png" in out and "fingerprint" in out
