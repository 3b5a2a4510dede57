"""The WD ONNX backend: preprocessing as WD models expect, a real graph through onnxruntime, folder errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from lorawb.errors import ModelError
from lorawb.tagger.backends import BackendOptions, open_backend
from lorawb.tagger.engine import predict_images
from lorawb.tagger.wd import wd_input
from tests.tagger.conftest import colour_tagger, solid


def reference_input(image: Image.Image, size: int) -> np.ndarray:
    """What a WD tagger was trained on, written out step by step in numpy."""
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
    alpha = rgba[..., 3:4] / 255.0
    rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)  # composited on white
    h, w = rgb.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = np.full((side, side, 3), 255.0)
    square[top : top + h, left : left + w] = rgb
    resized = Image.fromarray(np.round(square).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float32)[..., ::-1]  # BGR


def test_preprocessing_matches_the_reference_computation():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(30, 50, 4), dtype=np.uint8)
    pixels[:10, :, 3] = 0  # a transparent band: must come out white
    pixels[10:20, :, 3] = 128  # half transparent
    image = Image.fromarray(pixels, "RGBA")
    got = wd_input(image, 64)
    want = reference_input(image, 64)
    assert got.shape == (64, 64, 3) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1.0  # the same up to rounding of the composite
    # Padded on white: the rows above and below the 50x30 picture (scaled to 64 wide: 38 high) are 255.
    assert (got[:5] == 255.0).all() and (got[-5:] == 255.0).all()
    assert got.max() > 1.0  # 0-255, not normalised
    # An opaque image skips the compositing: the same input as through RGBA.
    opaque = Image.fromarray(pixels[..., :3], "RGB")
    assert np.array_equal(wd_input(opaque, 64), wd_input(opaque.convert("RGBA"), 64))
    assert np.array_equal(wd_input(opaque.convert("L"), 64)[..., 0], wd_input(opaque.convert("L"), 64)[..., 2])


def test_large_images_are_reduced_first_and_stay_close_to_the_reference():
    rng = np.random.default_rng(5)
    smooth = Image.fromarray(rng.integers(0, 256, size=(24, 18, 3), dtype=np.uint8)).resize((270, 360))
    got = wd_input(smooth, 64)  # 360 // 64 = 5: box-reduced to 54x72 first, then bicubic
    want = reference_input(smooth, 64)
    assert got.shape == want.shape
    assert np.abs(got - want).mean() < 2.0 and np.abs(got - want).max() < 24


def test_channels_reach_the_model_in_bgr_order(wd_model, tmp_path):
    backend = open_backend(None, str(wd_model), BackendOptions())
    red = solid(tmp_path / "red.png", (255, 0, 0))
    solid(tmp_path / "blue.png", (0, 0, 255))
    assert wd_input(Image.open(red), 64)[32, 32].tolist() == [0.0, 0.0, 255.0]  # B, G, R
    run = predict_images(tmp_path, ["red.png", "blue.png"], backend, workers=1)
    scores = {p: {lab.name: lab.score for lab in labels} for p, labels in run.predictions.items()}
    assert scores["red.png"]["red_hair"] > 0.99 and scores["red.png"].get("blue_hair", 0) < 0.01
    assert scores["blue.png"]["blue_hair"] > 0.99 and scores["blue.png"].get("red_hair", 0) < 0.01
    assert backend.name == "WD tagger wd-tiny (CPU, 64 px)"


def test_batches_give_the_same_answers_as_one_at_a_time(wd_model, tmp_path):
    colours = [(255, 0, 0), (0, 0, 255), (255, 255, 255), (10, 200, 30), (90, 90, 90)]
    names = [solid(tmp_path / f"i{n}.png", c, (20 + 7 * n, 33)).name for n, c in enumerate(colours)]
    batched = predict_images(tmp_path, names, open_backend(None, str(wd_model), BackendOptions(batch_size=4)))
    single = predict_images(tmp_path, names, open_backend(None, str(wd_model), BackendOptions(batch_size=1)))
    assert batched.predictions == single.predictions and batched.computed == 5


def test_a_graph_with_a_fixed_batch_of_one(tmp_path):
    model = colour_tagger(tmp_path / "fixed", batch=1)
    backend = open_backend(None, str(model), BackendOptions(batch_size=8))
    assert backend.batch_size == 1
    names = [solid(tmp_path / f"{i}.png", (255, 0, 0)).name for i in range(3)]
    assert predict_images(tmp_path, names, backend).computed == 3


def test_folder_errors_say_what_is_expected(tmp_path, wd_model):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError) as info:
        open_backend(None, str(empty), BackendOptions())
    assert "model.onnx + selected_tags.csv" in str(info.value) and "config.json" in str(info.value)

    (wd_model / "selected_tags.csv").rename(tmp_path / "tags.csv")
    with pytest.raises(ModelError, match="no selected_tags.csv beside model.onnx"):
        open_backend(None, str(wd_model), BackendOptions())

    (wd_model / "selected_tags.csv").write_text("id,tag\n1,a\n", encoding="utf-8")
    with pytest.raises(ModelError) as info:
        open_backend(None, str(wd_model), BackendOptions())
    assert info.value.line == 1 and "no 'name' and no 'category' column" in info.value.message

    (wd_model / "selected_tags.csv").write_text("tag_id,name,category,count\n1,a,0,5\n", encoding="utf-8")
    with pytest.raises(ModelError, match="the model has 12 outputs but selected_tags.csv lists 1 tag"):
        open_backend(None, str(wd_model), BackendOptions())

    with pytest.raises(ModelError, match="no such model"):
        open_backend(None, str(tmp_path / "nowhere"), BackendOptions())


def test_missing_onnxruntime_says_what_to_install(wd_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModelError) as info:
        open_backend(None, str(wd_model), BackendOptions(batch_size=3))
    assert "needs the Python package 'onnxruntime'" in info.value.message
    assert "pip install 'lorawb[tagger]'" in info.value.hint
