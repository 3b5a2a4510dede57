"""The dataset is part of what a run is: `lorawb compare` and the Train tab show what changed in it.

Runs here are folders the test writes (no training): a LoRA file holding only kohya's metadata, and
a dataset manifest where the test gives one.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

from textual.widgets import DataTable

from lorawb.core.run_dataset import dataset_changes, from_metadata, with_manifest
from lorawb.tui.app import LorawbApp
from lorawb.tui.widgets.train_charts import SeriesChart
from tests.tui.test_train_tab import make_run, tab, wait_for, write_steps

V1, V2 = "20261125-100000-zkx_mira", "20261125-110000-zkx_mira"


def fake_lora(path: Path, images: int, tags: dict[str, int], repeats: int = 10) -> None:
    """A .safetensors file with no tensors and the kohya metadata a lorawb run writes."""
    meta = {
        "ss_dataset_dirs": json.dumps({f"{repeats}_zkx_mira": {"n_repeats": repeats, "img_count": images}}),
        "ss_tag_frequency": json.dumps({f"{repeats}_zkx_mira": tags}),
        "ss_num_train_images": str(images * repeats),
    }
    header = json.dumps({"__metadata__": meta}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def two_runs(project, manifests: bool = False):
    runs = []
    for rid, n, extra in ((V1, 31, {}), (V2, 35, {"red hair": 4})):
        run = make_run(project, rid)
        fake_lora(run.path / "checkpoints" / "zkx_mira-000200.safetensors", n, {"zkx_mira": n, "forest": 8, **extra})
        from lorawb.train.events import EventWriter

        w = EventWriter(run.events)
        write_steps(w, 1, 11)
        w.status("finished")
        w.close()
        if manifests:
            images = [{"path": f"10_zkx_mira/img_{i:03d}.png", "sha256": f"{i:064x}", "repeats": 10} for i in range(n)]
            (run.path / "dataset.json").write_text(json.dumps({"version": 1, "images": images}))
        runs.append(run)
    return runs


def test_changes_between_two_datasets():
    a = from_metadata({"ss_dataset_dirs": '{"10_x": {"n_repeats": 10, "img_count": 31}}'})
    b = from_metadata({"ss_dataset_dirs": '{"10_x": {"n_repeats": 10, "img_count": 35}}'})
    rows = {r.what: (r.a, r.b) for r in dataset_changes(a, b)}
    assert rows["dataset: images"] == ("31", "35")
    assert rows["dataset: 10_x/"] == ("31 images × 10 repeats", "35 images × 10 repeats")
    assert rows["dataset: steps per epoch"] == ("310", "350")
    assert dataset_changes(a, from_metadata({"ss_dataset_dirs": '{"10_x": {"n_repeats": 10, "img_count": 31}}'})) == []
    files = [{"path": f"10_x/{i}.png", "sha256": str(i)} for i in range(3)]
    ma = with_manifest(None, {"images": files})
    mb = with_manifest(None, {"images": files[1:] + [{"path": "10_x/new.png", "sha256": "n"}]})
    rows = {r.what: (r.a, r.b) for r in dataset_changes(ma, mb)}
    assert rows["dataset: files added"] == ("-", "1: new.png")
    assert rows["dataset: files removed"] == ("1: 0.png", "-")
    assert rows["dataset: fingerprint"][0] != rows["dataset: fingerprint"][1]


def test_compare_shows_that_the_dataset_changed_under_the_same_config(sample_like_project):
    project = sample_like_project
    two_runs(project, manifests=True)
    out = subprocess.run(
        [sys.executable, "-m", "lorawb", "compare", str(project.root), V1, V2],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "the two runs have the same config; their datasets differ" in text
    lines = [" ".join(line.replace("│", " ").split()) for line in text.splitlines()]
    assert "images 31 35" in lines
    assert "10_zkx_mira/ 31 images × 10 repeats 35 images × 10 repeats" in lines
    assert "tags only here - red hair" in lines
    assert any(line.startswith("files added - 4: img_031.png, img_032.png, img_033.png +1") for line in lines)


async def test_the_train_tabs_compare_shows_the_dataset_and_tells_the_runs_apart(sample_like_project):
    project = sample_like_project
    two_runs(project)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: tab(app).view is not None)
        await pilot.press("v")
        await wait_for(pilot, lambda: tab(app).comparison is not None)
        diff = app.query_one("#compare-diff", DataTable)
        await wait_for(pilot, lambda: diff.row_count > 1)
        rows = [[str(x) for x in diff.get_row_at(i)] for i in range(diff.row_count)]
        assert ["dataset: images", "35", "31"] in rows  # A is the newest run
        assert rows[-1] == ["(same config)", "", ""]
        chart = app.query_one("#chart-compare", SeriesChart)
        assert [ln.label for ln in chart.lines] == ["A 11:00:00 zkx_mira", "B 10:00:00 zkx_mira"]
