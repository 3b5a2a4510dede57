"""Pose skeletons drawn by lorawb: a small built-in library of body poses as OpenPose keypoints.

An OpenPose ControlNet is conditioned on a picture of a skeleton: 18 body keypoints (COCO
order: nose, neck, right shoulder/elbow/wrist, left shoulder/elbow/wrist, right hip/knee/ankle,
left hip/knee/ankle, right eye, left eye, right ear, left ear) joined by coloured limbs on
black, each limb and joint in its fixed OpenPose colour. Instead of running a pose detector on
photos, lorawb keeps a few poses as keypoint lists and draws them itself: the same name and
size give the same pixels on every machine.

Keypoints are in figure units: x across (0 is the body's middle; the person's right is at
negative x, on the image's left, as in a front view), y down from the top of the head (0) to
the feet (about 0.95). A keypoint that is hidden (a back view's face) is ``None``. No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

from lorawb.core.captions import tag_key

Point = tuple[float, float] | None

# OpenPose's limbs, as pairs of keypoint indices, and the colour of each (and of each joint).
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
LIMB_SHADE = 0.6  # limbs are drawn darker than joints, as OpenPose's renderer does
FIGURE_TOP, FIGURE_BOTTOM = -0.12, 1.0  # the figure space every pose fits (raised hands reach above the head)


@dataclass(frozen=True)
class Pose:
    name: str
    points: tuple[Point, ...]  # 18 keypoints, COCO order

    def __post_init__(self) -> None:
        if len(self.points) != 18:
            raise ValueError(f"pose {self.name!r}: 18 keypoints, not {len(self.points)}")


def _front(**changes: Point) -> tuple[Point, ...]:
    """A front-facing standing figure, with some keypoints moved."""
    base: dict[str, Point] = {
        "nose": (0.0, 0.08),
        "neck": (0.0, 0.18),
        "r_shoulder": (-0.12, 0.19),
        "r_elbow": (-0.15, 0.33),
        "r_wrist": (-0.16, 0.46),
        "l_shoulder": (0.12, 0.19),
        "l_elbow": (0.15, 0.33),
        "l_wrist": (0.16, 0.46),
        "r_hip": (-0.07, 0.5),
        "r_knee": (-0.08, 0.72),
        "r_ankle": (-0.08, 0.95),
        "l_hip": (0.07, 0.5),
        "l_knee": (0.08, 0.72),
        "l_ankle": (0.08, 0.95),
        "r_eye": (-0.025, 0.065),
        "l_eye": (0.025, 0.065),
        "r_ear": (-0.05, 0.075),
        "l_ear": (0.05, 0.075),
    }
    unknown = set(changes) - set(base)
    if unknown:
        raise ValueError(f"unknown keypoints {sorted(unknown)}")
    base.update(changes)
    return tuple(base.values())


LIBRARY: dict[str, Pose] = {
    p.name: p
    for p in (
        Pose("standing", _front()),
        Pose(
            "walking",
            _front(
                r_elbow=(-0.13, 0.33), r_wrist=(-0.07, 0.45), l_elbow=(0.15, 0.33), l_wrist=(0.21, 0.44),
                r_knee=(-0.04, 0.72), r_ankle=(-0.12, 0.93), l_knee=(0.07, 0.7), l_ankle=(0.13, 0.95),
            ),
        ),
        Pose(
            "running",
            _front(
                r_elbow=(-0.2, 0.28), r_wrist=(-0.12, 0.2), l_elbow=(0.19, 0.35), l_wrist=(0.25, 0.45),
                r_knee=(-0.02, 0.64), r_ankle=(-0.14, 0.8), l_knee=(0.1, 0.72), l_ankle=(0.16, 0.96),
            ),
        ),
        Pose(
            "sitting",
            _front(
                r_hip=(-0.07, 0.55), l_hip=(0.07, 0.55), r_knee=(-0.11, 0.63), l_knee=(0.11, 0.63),
                r_ankle=(-0.11, 0.88), l_ankle=(0.11, 0.88), r_wrist=(-0.12, 0.55), l_wrist=(0.12, 0.55),
            ),
        ),
        Pose("waving", _front(r_elbow=(-0.24, 0.17), r_wrist=(-0.26, 0.03))),
        Pose(
            "arms up",
            _front(r_elbow=(-0.17, 0.07), r_wrist=(-0.19, -0.08), l_elbow=(0.17, 0.07), l_wrist=(0.19, -0.08)),
        ),
        Pose(
            "arms crossed",
            _front(r_elbow=(-0.15, 0.33), r_wrist=(0.07, 0.3), l_elbow=(0.15, 0.33), l_wrist=(-0.07, 0.31)),
        ),
        Pose(
            "hands on hips",
            _front(r_elbow=(-0.23, 0.35), r_wrist=(-0.1, 0.48), l_elbow=(0.23, 0.35), l_wrist=(0.1, 0.48)),
        ),
        Pose(
            "three-quarter view",
            _front(
                nose=(0.04, 0.08), r_eye=(0.0, 0.065), l_eye=(0.045, 0.065), r_ear=(-0.05, 0.075), l_ear=None,
                r_shoulder=(-0.08, 0.19), l_shoulder=(0.11, 0.2), r_elbow=(-0.1, 0.33), r_wrist=(-0.1, 0.46),
                l_elbow=(0.13, 0.34), l_wrist=(0.14, 0.47), r_hip=(-0.04, 0.5), l_hip=(0.07, 0.5),
                r_knee=(-0.05, 0.72), l_knee=(0.08, 0.72), r_ankle=(-0.05, 0.95), l_ankle=(0.08, 0.95),
            ),
        ),
        Pose(
            "side view",
            _front(
                nose=(-0.07, 0.08), r_eye=(-0.04, 0.065), l_eye=None, r_ear=(0.02, 0.075), l_ear=None,
                r_shoulder=(-0.01, 0.19), l_shoulder=None, r_elbow=(-0.02, 0.33), r_wrist=(-0.04, 0.46),
                l_elbow=None, l_wrist=None, r_hip=(0.0, 0.5), l_hip=None, r_knee=(-0.02, 0.72),
                r_ankle=(0.0, 0.95), l_knee=(0.01, 0.72), l_ankle=(0.03, 0.95),
            ),
        ),
        Pose(
            # Seen from behind the person's right side is on the image's right, and the face is hidden.
            "back view",
            _front(
                nose=None, r_eye=None, l_eye=None, r_ear=(0.05, 0.075), l_ear=(-0.05, 0.075),
                r_shoulder=(0.12, 0.19), r_elbow=(0.15, 0.33), r_wrist=(0.16, 0.46),
                l_shoulder=(-0.12, 0.19), l_elbow=(-0.15, 0.33), l_wrist=(-0.16, 0.46),
                r_hip=(0.07, 0.5), r_knee=(0.08, 0.72), r_ankle=(0.08, 0.95),
                l_hip=(-0.07, 0.5), l_knee=(-0.08, 0.72), l_ankle=(-0.08, 0.95),
            ),
        ),
    )
}  # fmt: skip


def find(name: str) -> Pose | None:
    """The library's pose of this name (case, spaces and underscores as in tags), or None."""
    key = tag_key(name).replace("-", " ")
    for pose in LIBRARY.values():
        if tag_key(pose.name).replace("-", " ") == key:
            return pose
    return None


def names() -> list[str]:
    return list(LIBRARY)


def _fit(width: int, height: int) -> tuple[float, float, float]:
    """(scale, x of the body's middle, y of figure y 0): the figure space fitted into the image, centred."""
    span = FIGURE_BOTTOM - FIGURE_TOP
    scale = min(height * 0.92 / span, width * 0.92 / 0.7)  # a figure is about 0.7 units wide with arms out
    top = (height - span * scale) / 2 - FIGURE_TOP * scale
    return scale, width / 2, top


def keypoints(pose: Pose, width: int, height: int) -> list[tuple[float, float] | None]:
    """The pose's keypoints in pixels of a ``width`` × ``height`` image."""
    scale, cx, top = _fit(width, height)
    return [None if p is None else (cx + p[0] * scale, top + p[1] * scale) for p in pose.points]


def _limb_polygon(a: tuple[float, float], b: tuple[float, float], half_width: float) -> list[tuple[float, float]]:
    """An ellipse from ``a`` to ``b``, ``half_width`` across: OpenPose's limb shape, as a polygon."""
    mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    half_length = math.hypot(b[0] - a[0], b[1] - a[1]) / 2
    angle = math.atan2(b[1] - a[1], b[0] - a[0])
    cos, sin = math.cos(angle), math.sin(angle)
    out = []
    for i in range(36):
        t = 2 * math.pi * i / 36
        x, y = half_length * math.cos(t), half_width * math.sin(t)
        out.append((mx + x * cos - y * sin, my + x * sin + y * cos))
    return out


def draw(pose: Pose | str, width: int, height: int) -> Image.Image:
    """The pose as an OpenPose skeleton image (RGB, black background): what an OpenPose ControlNet reads."""
    if isinstance(pose, str):
        found = find(pose)
        if found is None:
            raise ValueError(f"no pose {pose!r} in the library ({', '.join(LIBRARY)})")
        pose = found
    image = Image.new("RGB", (width, height), (0, 0, 0))
    pen = ImageDraw.Draw(image)
    pts = keypoints(pose, width, height)
    stick = max(1.0, 4.0 * min(width, height) / 512)
    for n, (i, j) in enumerate(LIMBS):
        a, b = pts[i], pts[j]
        if a is None or b is None:
            continue
        colour = tuple(int(c * LIMB_SHADE) for c in COLOURS[n])
        pen.polygon(_limb_polygon(a, b, stick), fill=colour)
    radius = max(1.0, 4.0 * min(width, height) / 512)
    for n, p in enumerate(pts):
        if p is not None:
            pen.ellipse((p[0] - radius, p[1] - radius, p[0] + radius, p[1] + radius), fill=COLOURS[n])
    return image
