"""Faces: an InsightFace-format folder (an SCRFD-style detector and an ArcFace recognition model) run with onnxruntime.

``[matrix] face_embedder = "models/buffalo_l"`` names a local folder holding

- a detector, ``det_*.onnx`` (SCRFD, e.g. ``det_10g.onnx``): one image ``[1, 3, H, W]``, RGB,
  ``(x - 127.5) / 128``; per stride 8, 16 and 32 a score ``[N, 1]``, box distances ``[N, 4]``
  and (optionally) five keypoints ``[N, 10]``, N = (H / stride) × (W / stride) × 2 anchors, all
  in stride units from each anchor's centre (scores first, then boxes, then keypoints);
- a recognition model, any other ``*.onnx`` (ArcFace, e.g. ``w600k_r50.onnx``): faces
  ``[n, 3, 112, 112]``, RGB, ``(x - 127.5) / 127.5``, aligned on the five keypoints; out
  ``[n, D]`` embeddings.

Nothing is downloaded. ``FaceModel.detect`` finds faces (boxes in the image's pixels, best
first), ``FaceModel.embed`` gives their L2-normalised embeddings: a dot product is the cosine
similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lorawb.errors import ModelError

STRIDES = (8, 16, 32)
ANCHORS = 2
# ArcFace's five reference points in a 112×112 crop: eyes, nose, mouth corners.
ARCFACE_POINTS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


@dataclass(frozen=True)
class Face:
    box: Box
    score: float
    points: np.ndarray | None  # (5, 2) keypoints in pixels, or None when the detector has none

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        rest = []
        for j in order:
            xx0, yy0 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            xx1, yy1 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(0.0, xx1 - xx0) * max(0.0, yy1 - yy0)
            a = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            b = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            if inter / max(a + b - inter, 1e-9) <= iou:
                rest.append(j)
        order = rest
    return keep


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 similarity transform (scale, rotation, shift) taking ``src`` points nearest to ``dst`` (least squares)."""
    n = len(src)
    a = np.zeros((2 * n, 4), np.float64)
    b = dst.reshape(-1).astype(np.float64)
    a[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)]
    a[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(n), np.ones(n)]
    (p, q, tx, ty), *_ = np.linalg.lstsq(a, b, rcond=None)
    return np.array([[p, -q, tx], [q, p, ty]])


class FaceModel:
    """An InsightFace-format folder: ``detect`` then ``embed`` (see the module's docstring)."""

    def __init__(self, folder: str | Path, threshold: float = 0.5, nms: float = 0.4) -> None:
        import onnxruntime as ort

        self.path = Path(folder).expanduser()
        if not self.path.is_dir():
            raise ModelError(
                "the face embedder folder does not exist",
                path=self.path,
                hint="[matrix] face_embedder names a local InsightFace-format folder (det_*.onnx and an ArcFace .onnx)",
            )
        onnx = sorted(self.path.glob("*.onnx"))
        det = [p for p in onnx if p.name.startswith("det")]
        rec = [p for p in onnx if not p.name.startswith("det")]
        if not det or not rec:
            raise ModelError(
                "the face embedder folder needs a detector (det_*.onnx, SCRFD) and a recognition model (ArcFace .onnx)",
                path=self.path,
                hint=f"found: {', '.join(p.name for p in onnx) or 'no .onnx file'}",
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.det = ort.InferenceSession(str(det[0]), opts, providers=["CPUExecutionProvider"])
            self.rec = ort.InferenceSession(str(rec[0]), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a corrupt or foreign file
            raise ModelError(f"cannot load the face models: {exc}", path=self.path) from exc
        self.det_file, self.rec_file = det[0].name, rec[0].name
        shape = self.det.get_inputs()[0].shape
        h, w = (shape[2], shape[3]) if len(shape) == 4 else (None, None)
        self.det_size = (int(w) if isinstance(w, int) else 640, int(h) if isinstance(h, int) else 640)
        outs = self.det.get_outputs()
        if len(outs) not in (6, 9):
            raise ModelError(
                f"the detector has {len(outs)} outputs; an SCRFD detector has 6 (scores, boxes) or 9 (and keypoints)",
                path=det[0],
            )
        self.has_points = len(outs) == 9
        rshape = self.rec.get_inputs()[0].shape
        self.rec_size = int(rshape[2]) if len(rshape) == 4 and isinstance(rshape[2], int) else 112
        self.threshold, self.nms = threshold, nms
        self.key = "-".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in (det[0], rec[0]))

    @property
    def name(self) -> str:
        return f"faces ({self.path.name}: {self.det_file} + {self.rec_file})"

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in ``image``, best score first (boxes and keypoints in its pixels)."""
        img = image.convert("RGB")
        tw, th = self.det_size
        scale = min(tw / img.width, th / img.height)
        resized = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
        canvas = np.zeros((th, tw, 3), np.float32)
        canvas[: resized.height, : resized.width] = np.asarray(resized, np.float32)
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outs = self.det.run(None, {self.det.get_inputs()[0].name: blob})
        boxes, scores, points = [], [], []
        for i, stride in enumerate(STRIDES):
            sc = np.asarray(outs[i]).reshape(-1)
            dist = np.asarray(outs[i + 3]).reshape(-1, 4) * stride
            gh, gw = th // stride, tw // stride
            ys, xs = np.mgrid[:gh, :gw]
            centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
            centres = np.repeat(centres, ANCHORS, axis=0)
            if len(sc) != len(centres):
                raise ModelError(
                    f"the detector's stride-{stride} output has {len(sc)} scores, expected {len(centres)} "
                    f"for a {tw}×{th} input",
                    path=self.path,
                )
            hit = np.where(sc >= self.threshold)[0]
            c, d = centres[hit], dist[hit]
            boxes.append(np.c_[c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]])
            scores.append(sc[hit])
            if self.has_points:
                k = np.asarray(outs[i + 6]).reshape(-1, 10)[hit] * stride
                points.append(np.repeat(c, 5, axis=0).reshape(-1, 10) + k)
        if not any(len(s) for s in scores):
            return []
        b, s = np.concatenate(boxes) / scale, np.concatenate(scores)
        p = np.concatenate(points) / scale if self.has_points else None
        out = []
        for i in _nms(b, s, self.nms):
            x0, y0, x1, y1 = (float(v) for v in b[i])
            box = (max(0.0, x0), max(0.0, y0), min(float(img.width), x1), min(float(img.height), y1))
            out.append(Face(box, float(s[i]), p[i].reshape(5, 2) if p is not None else None))
        return out

    def _aligned(self, image: Image.Image, face: Face) -> np.ndarray:
        size = self.rec_size
        if face.points is not None and np.ptp(face.points, axis=0).max() > 1e-3:
            m = _similarity(ARCFACE_POINTS * (size / 112.0), face.points)  # crop pixels -> image pixels
            crop = image.transform((size, size), Image.AFFINE, tuple(m.reshape(-1)), Image.BILINEAR)
        else:
            crop = image.crop(tuple(round(v) for v in face.box)).resize((size, size), Image.BILINEAR)
        return np.asarray(crop.convert("RGB"), np.float32)

    def embed(self, image: Image.Image, faces: list[Face]) -> np.ndarray:
        """L2-normalised embeddings of ``faces`` in ``image`` (rows in their order)."""
        if not faces:
            return np.zeros((0, 1), np.float32)
        img = image.convert("RGB")
        batch = np.stack([(self._aligned(img, f) - 127.5) / 127.5 for f in faces]).transpose(0, 3, 1, 2)
        out = np.asarray(self.rec.run(None, {self.rec.get_inputs()[0].name: batch.astype(np.float32)})[0], np.float32)
        out = out.reshape(len(faces), -1)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def load_faces(folder: str | Path) -> FaceModel:
    return FaceModel(folder)
