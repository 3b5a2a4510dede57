"""End to end on the sample project: after its default run, a matrix over checkpoints {50, 200} ×
weights {0, 0.5, 1} × 4 contexts × 2 seeds (+ 2 control prompts), scored by the toy-world reader
(10 DDIM steps: half the model's 20, the same ranking; the README's table is at 20).

The checkpoint that trained longest at full weight draws the character most; the base model
(weight 0) least; the control prompts' leak is reported. Training is shared with
tests/toyworld/test_lora_e2e.py (the session fixture ``trained_sample``).
"""

from __future__ import annotations

import pytest

from lorawb.matrix.folder import MatrixFolder
from lorawb.matrix.report import load_report
from lorawb.matrix.runner import run_matrix
from lorawb.matrix.scores import by_axis_value
from lorawb.toyworld.check import UNRELATED
from lorawb.train.runfolder import list_runs

pytestmark = pytest.mark.slow


def test_the_matrix_ranks_the_trained_checkpoint_at_full_weight_highest(trained_sample):
    project, _lora = trained_sample
    run = list_runs(project / "runs")[-1]
    folder = MatrixFolder(project / "matrices" / "e2e")
    folder.create()
    controls = ", ".join(f'"{p}"' for p in UNRELATED)
    folder.spec.write_text(
        f"""
[matrix]
run = "{run.id}"
prompt = "{{trigger}}, {{context}}"
controls = [{controls}]
cfg = 1.5
steps = 10

[axes]
checkpoint = [50, 200]
weight = [0, 0.5, 1]
context = ["forest", "spaceship", "bar", "beach"]
seed = [0, 1]
""",
        encoding="utf-8",
    )
    assert run_matrix(folder) == "finished"
    report = load_report(folder)
    assert report.drawn == report.total == (1 + 2 * 2) * (4 + 2) * 2  # weight 0 drawn once for both
    assert report.scorer == "toy-world reader"
    rows = {(r.checkpoint, r.weight): r for r in report.summary().rows}
    assert set(rows) == {("base", 0.0), ("step 50", 0.5), ("step 50", 1.0), ("step 200", 0.5), ("step 200", 1.0)}
    identity = {k: r.identity for k, r in rows.items()}
    assert max(identity, key=identity.get) == ("step 200", 1.0), identity
    assert min(identity, key=identity.get) == ("base", 0.0), identity
    assert identity[("step 200", 1.0)] - identity[("base", 0.0)] >= 0.3, identity
    for key, r in rows.items():
        if key != ("base", 0.0):
            assert r.leak is not None and 0.0 <= r.leak <= 1.0  # measured on the control prompts
    assert rows[("base", 0.0)].leak is None
    by_context = by_axis_value(report.plan.layout, report.scores, report.scorer, "context", report.summary().best())
    assert [v.value for v in by_context] == ["forest", "spaceship", "bar", "beach"]
    assert all(v.cells == 2 and v.identity is not None for v in by_context)  # the character in every context
    rec = report.summary().recommendation()
    assert (
        rec.startswith("step 200 at weight 1: identity ")
        and "leak " in rec
        and "(measured by the toy-world reader)" in rec
    )
