"""The toy-world CLIP and DINOv2 trainer (a few steps here), and the calibration's arithmetic."""

from __future__ import annotations

import pytest

from lorawb.matrix.calibration import correlate, read_calibration, spearman, write_calibration


@pytest.mark.parametrize("kind", ["clip", "dinov2"])
def test_a_toy_embedder_trains_and_loads_like_a_real_folder(tmp_path, kind):
    from lorawb.matrix.embedder import load_embedder
    from lorawb.toyworld import world
    from lorawb.toyworld.embedders import train

    info = train(kind, tmp_path / kind, steps=3, n=64, batch=16, log=lambda _m: None)
    assert info["steps"] == 3 and info["seed"] == 1234
    emb = load_embedder(tmp_path / kind)
    assert emb.kind == kind and emb.has_text == (kind == "clip")
    vec = emb.images([world.render(world.Spec(hair="blue", outfit="orange"), 32)])
    assert vec.shape == (1, 64)
    if kind == "clip":
        assert emb.texts(["blue hair, orange outfit"]).shape == (1, 64)
    else:
        assert not (tmp_path / kind / "vocab.json").exists()


def test_rank_correlations_and_the_calibration_file(tmp_path):
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None
    truth = {str(i): {"identity": i / 10, "leak": (i % 3) / 3} for i in range(6)}
    measured = {str(i): {"identity": i / 5 + 0.1, "leak": 0.5} for i in range(6)}
    table = correlate(truth, measured)
    assert table["identity"] == {"rho": 1.0, "n": 6} and table["leak"]["rho"] is None
    assert table["prompt_following"] == {"rho": None, "n": 0}
    write_calibration(tmp_path, table, date="2026-12-06")
    assert read_calibration(tmp_path) == {"identity": 1.0}
    assert read_calibration(tmp_path / "nowhere") == {} and read_calibration("") == {}
