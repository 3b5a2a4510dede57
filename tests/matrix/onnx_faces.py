"""Tiny InsightFace-format models built with onnx.helper, in the real input and output shapes.

The detector (SCRFD layout: one image [1, 3, H, W]; per stride 8/16/32 scores [N, 1], box
distances [N, 4] and keypoints [N, 10], N = H/s × W/s × 2 anchors) "sees a face" where a patch is
strongly red (R − G − B of the normalised image, averaged over each stride-16 cell; the other
strides never fire); every box is its anchor's 16-pixel cell, the keypoints inside it. The recognition model (ArcFace layout:
[n, 3, 112, 112] -> [n, 512]) embeds the crop's mean colour through a fixed random projection,
so faces of the same colours match and others do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_face_models(dest: Path, size: int = 64) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dest.mkdir(parents=True, exist_ok=True)
    nodes, inits, outputs = [], [], []
    groups: dict[str, list] = {"score": [], "bbox": [], "kps": []}
    # keypoints (eyes, nose, mouth corners) inside the anchor's cell, in stride units from its corner
    kps_offsets = np.array([0.3, 0.4, 0.7, 0.4, 0.5, 0.6, 0.35, 0.8, 0.65, 0.8], np.float32)
    for s in (8, 16, 32):
        w = np.zeros((1, 3, s, s), np.float32)
        w[0, 0], w[0, 1], w[0, 2] = 1.0 / (s * s), -1.0 / (s * s), -1.0 / (s * s)
        inits += [
            numpy_helper.from_array(w, f"w{s}"),
            # only the stride-16 head fires (a face is a red 16×16 patch on the 16-pixel grid)
            numpy_helper.from_array(np.array([-1.5 if s == 16 else -100.0], np.float32), f"b{s}"),
            numpy_helper.from_array(np.array(6.0, np.float32), f"k{s}"),
            numpy_helper.from_array(np.zeros((8, 3, s, s), np.float32), f"wb{s}"),
            # box distances (left, top, right, bottom): the anchor's own cell
            numpy_helper.from_array(np.tile(np.array([0, 0, 1, 1], np.float32), 2), f"bb{s}"),
            numpy_helper.from_array(np.zeros((20, 3, s, s), np.float32), f"wk{s}"),
            numpy_helper.from_array(np.tile(kps_offsets, 2), f"bk{s}"),
        ]
        for kind, shape in (("score", [-1, 1]), ("bbox", [-1, 4]), ("kps", [-1, 10])):
            inits.append(numpy_helper.from_array(np.array(shape, np.int64), f"shape_{kind}{s}"))
        nodes += [
            helper.make_node("Conv", ["input.1", f"w{s}", f"b{s}"], [f"c{s}"], strides=[s, s]),
            helper.make_node("Mul", [f"c{s}", f"k{s}"], [f"m{s}"]),
            helper.make_node("Sigmoid", [f"m{s}"], [f"p{s}"]),
            helper.make_node("Concat", [f"p{s}", f"p{s}"], [f"pp{s}"], axis=1),
            helper.make_node("Transpose", [f"pp{s}"], [f"pt{s}"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [f"pt{s}", f"shape_score{s}"], [f"score_{s}"]),
            helper.make_node("Conv", ["input.1", f"wb{s}", f"bb{s}"], [f"cb{s}"], strides=[s, s]),
            helper.make_node("Transpose", [f"cb{s}"], [f"bt{s}"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [f"bt{s}", f"shape_bbox{s}"], [f"bbox_{s}"]),
            helper.make_node("Conv", ["input.1", f"wk{s}", f"bk{s}"], [f"ck{s}"], strides=[s, s]),
            helper.make_node("Transpose", [f"ck{s}"], [f"kt{s}"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [f"kt{s}", f"shape_kps{s}"], [f"kps_{s}"]),
        ]
        n = (size // s) ** 2 * 2
        groups["score"].append(helper.make_tensor_value_info(f"score_{s}", TensorProto.FLOAT, [n, 1]))
        groups["bbox"].append(helper.make_tensor_value_info(f"bbox_{s}", TensorProto.FLOAT, [n, 4]))
        groups["kps"].append(helper.make_tensor_value_info(f"kps_{s}", TensorProto.FLOAT, [n, 10]))
    outputs = groups["score"] + groups["bbox"] + groups["kps"]
    graph = helper.make_graph(
        nodes,
        "tiny_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        outputs,
        inits,
    )
    det = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    det.ir_version = 8
    onnx.checker.check_model(det)
    onnx.save(det, dest / "det_tiny.onnx")

    proj = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    rec_graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input.1"], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["flat"]),
            helper.make_node("MatMul", ["flat", "proj"], ["683"]),
        ],
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])],
        [numpy_helper.from_array(proj, "proj")],
    )
    rec = helper.make_model(rec_graph, opset_imports=[helper.make_opsetid("", 13)])
    rec.ir_version = 8
    onnx.checker.check_model(rec)
    onnx.save(rec, dest / "w600k_tiny.onnx")
    return dest
