"""WD-style ONNX taggers (SmilingWolf's WD v1.4 / v3 and their kin) through onnxruntime.

The folder holds ``model.onnx`` and ``selected_tags.csv`` (one row per model output, in
order: ``tag_id,name,category,count``). The model takes a batch of NHWC float images,
each prepared as those models were trained: RGBA composited on white, padded to a square
on white (centred), resized to the model's input size (bicubic; an image at least twice
that size is first box-reduced by a whole factor, as JPEG draft decoding does), channels
in BGR order, values 0-255 (not normalised). It outputs one sigmoid probability per tag.

CUDA is used when onnxruntime has its CUDA provider (the onnxruntime-gpu package), else
the CPU. ``LORAWB_THREADS`` caps the CPU threads onnxruntime uses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lorawb.errors import ModelError
from lorawb.tagger.backends import BackendOptions, file_identity, missing_package
from lorawb.tagger.labels import RATING, Label, Prediction, read_selected_tags
from lorawb.words import plural

DEFAULT_SIZE = 448  # every WD v1.4 / v3 tagger's input side, when the graph leaves it open
CACHE_FLOOR = 0.01  # probabilities kept per image (for the cache): thresholds below this are refused
PREPROCESS_VERSION = "1"  # bump when wd_input changes: cached predictions of the old input are dropped


def wd_input(image: Image.Image, size: int) -> np.ndarray:
    """One image as a WD tagger takes it: (size, size, 3) float32, BGR, 0-255, padded square on white."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        rgb = flat.convert("RGB")
    else:  # nothing to composite (and compositing a large opaque image costs more than the resize)
        rgb = image if image.mode == "RGB" else image.convert("RGB")
    factor = max(rgb.size) // size
    if factor >= 2:  # a box reduction by a whole factor first (what a JPEG's draft decoding does), >= size
        rgb = rgb.reduce(factor)
    side = max(rgb.size)
    if rgb.size != (side, side):
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
        rgb = square
    if side != size:
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(rgb)[:, :, ::-1].astype(np.float32)  # BGR, as a contiguous copy


def providers(device: str = "auto") -> list[str]:
    """onnxruntime's execution providers for ``device``: CUDA first when it is there, the CPU always."""
    ort = _ort()
    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ModelError(
            "onnxruntime has no CUDA provider here",
            hint="pip install onnxruntime-gpu (in place of onnxruntime), or use --device cpu",
        )
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise missing_package(
            "onnxruntime",
            "a WD tagger (model.onnx)",
            "pip install 'lorawb[tagger]'  (onnxruntime-gpu in its place for CUDA)",
        ) from exc
    return onnxruntime


class WDBackend:
    """A WD tagger folder opened for inference."""

    def __init__(self, onnx_path: Path, tags_path: Path, options: BackendOptions) -> None:
        folder = onnx_path.parent
        if not tags_path.is_file():
            raise ModelError(
                f"no {tags_path.name} beside {onnx_path.name}",
                path=folder,
                hint="a WD tagger folder holds model.onnx and selected_tags.csv (columns name, category), "
                "both from the model's page",
            )
        self.tags = read_selected_tags(tags_path)
        ort = _ort()
        so = ort.SessionOptions()
        so.log_severity_level = 3  # onnxruntime's own warnings are noise to a user
        threads = os.environ.get("LORAWB_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=so, providers=providers(options.device))
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for bad graphs
            raise ModelError(f"onnxruntime cannot load the model: {exc}", path=onnx_path) from exc
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or shape[3] != 3:
            raise ModelError(
                f"the model's input {inp.name!r} has shape {shape}: a WD tagger takes (batch, size, size, 3) images",
                path=onnx_path,
                hint="only WD-style taggers (NHWC, BGR, 0-255) are read from model.onnx",
            )
        self.input_name = inp.name
        self.size = next((d for d in shape[1:3] if isinstance(d, int) and d > 0), DEFAULT_SIZE)
        self.dtype = np.float16 if "float16" in inp.type else np.float32
        out = self.session.get_outputs()[0]
        self.output_name = out.name
        n_out = out.shape[-1] if out.shape and isinstance(out.shape[-1], int) else None
        if n_out is not None and n_out != len(self.tags):
            raise ModelError(
                f"the model has {n_out} outputs but {tags_path.name} lists {plural(len(self.tags), 'tag')}",
                path=tags_path,
                hint="use the selected_tags.csv that came with this model.onnx",
            )
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.batch_size = self.fixed_batch or options.batch_size
        self.min_side = self.size
        self.names = [t for t, _ in self.tags]
        self.categories = [c for _, c in self.tags]
        self.rating_mask = np.array([c == RATING for c in self.categories])
        provider = self.session.get_providers()[0]
        self.name = f"WD tagger {folder.name} ({provider.removesuffix('ExecutionProvider')}, {self.size} px)"
        self.key = f"wd:{file_identity(onnx_path, tags_path)}:p{PREPROCESS_VERSION}"
        self.confidence = f"the probability {onnx_path.name} gives the tag"

    def prepare(self, image: Image.Image) -> np.ndarray:
        return wd_input(image, self.size)

    def predict(self, batch: list[np.ndarray]) -> list[Prediction]:
        x = np.stack(batch).astype(self.dtype, copy=False)
        n = len(batch)
        if self.fixed_batch and n < self.fixed_batch:  # a graph with a fixed batch: pad, then drop the padding
            x = np.concatenate([x, np.zeros((self.fixed_batch - n, *x.shape[1:]), dtype=x.dtype)])
        probs = np.asarray(self.session.run([self.output_name], {self.input_name: x})[0], dtype=np.float32)[:n]
        if probs.size and (probs.min() < 0.0 or probs.max() > 1.0):
            probs = 1.0 / (1.0 + np.exp(-probs))  # a graph that ends before its sigmoid
        out: list[Prediction] = []
        for row in probs:
            keep = np.nonzero((row >= CACHE_FLOOR) | self.rating_mask)[0]
            out.append(tuple(Label(self.names[i], round(float(row[i]), 4), self.categories[i]) for i in keep.tolist()))
        return out
