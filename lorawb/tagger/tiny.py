"""Tiny WD-style taggers built locally with ``onnx.helper``, for tests and ``bench/tag_speed.py``.

Real ONNX graphs in the real folder layout (``model.onnx`` + ``selected_tags.csv``), loaded
by the same code as a downloaded WD tagger. ``write_colour_tagger`` makes one whose outputs
are a known function of the image's mean colour (so tests can predict its answers, and
check that the channels arrive in BGR order); ``write_conv_tagger`` makes one with a small
convolution stack, whose cost per image is closer to a real model's, for benchmarks.
Needs the ``onnx`` package (the ``test`` extra).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

OPSET = 17
RATINGS = ("general", "sensitive", "questionable", "explicit")
CATEGORY_CODES = {"rating": 9, "general": 0, "character": 4}


def write_tags(dest: Path, tags: list[tuple[str, str]]) -> Path:
    """selected_tags.csv in the WD v3 layout: tag_id,name,category,count."""
    path = Path(dest) / "selected_tags.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tag_id", "name", "category", "count"])
        for i, (name, category) in enumerate(tags):
            w.writerow([100000 + i, name, CATEGORY_CODES[category], 1000 - i])
    return path


def write_colour_tagger(
    dest: str | Path,
    tags: list[tuple[str, str]],
    weights: np.ndarray,
    bias: np.ndarray,
    *,
    size: int = 64,
    batch: int | str = "batch",
) -> Path:
    """probabilities = sigmoid(mean_bgr / 255 @ weights + bias); ``weights`` is (3, len(tags)), rows B, G, R."""
    from onnx import helper, numpy_helper

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    n = len(tags)
    w = np.asarray(weights, dtype=np.float32).reshape(3, n)
    b = np.asarray(bias, dtype=np.float32).reshape(n)
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("Mul", ["mean", "scale"], ["unit"]),
        helper.make_node("MatMul", ["unit", "W"], ["logits0"]),
        helper.make_node("Add", ["logits0", "b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["output"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1 / 255], dtype=np.float32), "scale"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "b"),
    ]
    _save(dest, nodes, inits, size, n, batch)
    write_tags(dest, tags)
    return dest


def write_conv_tagger(dest: str | Path, n_tags: int = 2000, *, size: int = 448, width: int = 16, seed: int = 0) -> Path:
    """A random convolution stack (stride-2 convs, pooling, a dense head) at a WD input size."""
    from onnx import helper, numpy_helper

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Transpose", ["input"], ["x0"], perm=[0, 3, 1, 2])]
    inits = []
    c_in, x = 3, "x0"
    for i, c_out in enumerate((width, width * 2, width * 4, width * 4)):
        wname = f"conv{i}"
        inits.append(
            numpy_helper.from_array((rng.standard_normal((c_out, c_in, 3, 3)) * 0.05).astype(np.float32), wname)
        )
        nodes.append(helper.make_node("Conv", [x, wname], [f"c{i}"], strides=[2, 2], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        c_in, x = c_out, f"r{i}"
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "head", "head_b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["output"]),
    ]
    inits += [
        numpy_helper.from_array((rng.standard_normal((c_in, n_tags)) * 0.1).astype(np.float32), "head"),
        # Most tags near 0, a few likely: a real tagger's spread (what is kept per image costs time too).
        numpy_helper.from_array(rng.normal(-6.0, 1.5, n_tags).astype(np.float32), "head_b"),
    ]
    _save(dest, nodes, inits, size, n_tags, "batch")
    names = [(r, "rating") for r in RATINGS] + [(f"tag_{i}", "general") for i in range(n_tags - len(RATINGS))]
    write_tags(dest, names)
    return dest


def _save(dest: Path, nodes: list, inits: list, size: int, n: int, batch: int | str) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "tiny_wd_tagger",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, size, size, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, n])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lorawb")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(dest / "model.onnx"))
