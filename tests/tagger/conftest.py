"""Fixtures of the tagger tests: a tiny WD tagger built with onnx.helper, and a project of coloured images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lorawb.core.project import Project, init_project
from lorawb.tagger.tiny import RATINGS, write_colour_tagger

TRIGGER = "zkx_mira"
# The colour tagger's tags and how each answers to the image's mean colour (rows: B, G, R of 0..1).
TAGS: list[tuple[str, str, tuple[float, float, float], float]] = [
    *[(r, "rating", (0.0, 0.0, 0.0), 3.0 if r == "general" else -3.0) for r in RATINGS],
    ("red_hair", "general", (-5.0, -5.0, 10.0), -2.0),  # red images: ~1.0; white 0.12; blue ~0
    ("blue_hair", "general", (10.0, -5.0, -5.0), -2.0),
    ("white_background", "general", (3.0, 3.0, 3.0), -6.0),  # white 0.95, pure red/blue 0.05
    ("smile", "general", (0.0, 0.0, 0.0), -0.4055),  # always 0.40
    ("^_^", "general", (0.0, 0.0, 0.0), 0.0),  # always 0.50: a kaomoji keeps its underscore
    ("simple_background", "general", (0.0, 0.0, 0.0), 1.0),  # always 0.73
    ("zkx_mira_(original)", "character", (0.0, 0.0, 8.0), -4.0),  # red: 0.98, white 0.98, blue 0.02
    ("other_girl", "character", (0.0, 0.0, 0.0), 0.85),  # always 0.70: under the character threshold
]


def colour_tagger(dest: Path, *, size: int = 64, batch: int | str = "batch") -> Path:
    tags = [(name, cat) for name, cat, _, _ in TAGS]
    weights = np.array([w for _, _, w, _ in TAGS], dtype=np.float32).T
    bias = np.array([b for _, _, _, b in TAGS], dtype=np.float32)
    return write_colour_tagger(dest, tags, weights, bias, size=size, batch=batch)


@pytest.fixture
def wd_model(tmp_path: Path) -> Path:
    return colour_tagger(tmp_path / "models" / "wd-tiny")


def solid(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def tag_project(tmp_path: Path) -> Project:
    """dataset/10_zkx_mira/: red.png (captioned), blue.png and white.png (no caption), broken.png (corrupt)."""
    project = init_project(tmp_path / "proj", trigger=TRIGGER)
    d = project.dataset_dir / "10_zkx_mira"
    solid(d / "red.png", (255, 0, 0))
    (d / "red.txt").write_bytes(b"forest, zkx_mira, smile\r\n")  # the trigger not first, CRLF
    solid(d / "blue.png", (0, 0, 255))
    solid(d / "white.png", (255, 255, 255))
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return Project.load(project.root)


IMAGES = ["dataset/10_zkx_mira/red.png", "dataset/10_zkx_mira/blue.png", "dataset/10_zkx_mira/white.png"]
