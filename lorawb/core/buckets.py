"""Aspect-ratio buckets, as kohya and OneTrainer make them (pure Python, no torch).

Buckets have sides that are multiples of ``step`` (64) and an area of at most
``resolution**2``; an image goes to the bucket whose aspect ratio is nearest
its own, so nothing is stretched: it is resized to cover the bucket and cropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

Bucket = tuple[int, int]  # (width, height)


@lru_cache(maxsize=64)
def make_buckets(
    resolution: int, step: int = 64, min_side: int | None = None, max_side: int | None = None
) -> tuple[Bucket, ...]:
    """All (w, h) with w, h multiples of ``step``, w*h <= resolution**2, as large as possible per width."""
    if resolution < step:
        raise ValueError(f"resolution {resolution} is below the bucket step {step}: lower dataset.bucket_step")
    area = resolution * resolution
    min_side = min_side or max(step, (resolution // 2 // step) * step)
    max_side = max_side or resolution * 2
    buckets: set[Bucket] = set()
    w = min_side
    while w <= max_side:
        h = min(max_side, (area // w) // step * step)
        if h >= min_side:
            buckets.add((w, h))
            buckets.add((h, w))
        w += step
    buckets.add(((resolution // step) * step,) * 2)  # the square bucket always exists
    return tuple(sorted(buckets, key=lambda b: (b[0] / b[1], b[0])))


def nearest_bucket(width: int, height: int, resolution: int, step: int = 64) -> Bucket:
    """The bucket whose aspect ratio is closest (in log space) to the image's."""
    if width <= 0 or height <= 0:
        raise ValueError("image size must be positive")
    target = math.log(width / height)
    return min(make_buckets(resolution, step), key=lambda b: (abs(math.log(b[0] / b[1]) - target), -b[0] * b[1]))


def bucket_label(bucket: Bucket) -> str:
    w, h = bucket
    g = math.gcd(w, h)
    return f"{w}x{h} ({w // g}:{h // g})"


@dataclass(frozen=True)
class BucketSettings:
    """How images are bucketed for training: the resolution (bucket area side), the step, bucketing on/off.

    Built from the resolved training config by ``lorawb.train.config.bucket_settings`` (the one
    place that knows it); every view that shows a bucket (the doctor's histogram, Triage's facts,
    the trainer itself) asks this object.
    """

    resolution: int
    step: int = 64
    enabled: bool = True
    problem: str | None = None  # why no bucket can be given (a config error, resolution < step)

    def bucket(self, width: int, height: int) -> Bucket | None:
        """The bucket of a ``width`` x ``height`` image; None when there is none (see ``problem``)."""
        if self.problem is not None or width <= 0 or height <= 0:
            return None
        if not self.enabled:
            side = self.resolution // self.step * self.step
            return (side, side)
        return nearest_bucket(width, height, self.resolution, self.step)

    def describe(self) -> str:
        if self.problem is not None:
            return self.problem
        shape = f"step {self.step}" if self.enabled else "bucketing off: square crops"
        return f"{self.resolution} px, {shape}"


def one_bucket_warning(sizes: list[tuple[int, int]], buckets: dict[Bucket, int] | list[Bucket]) -> str | None:
    """Images of different shapes that all land in one bucket: the step is too coarse for the resolution.

    ``sizes`` are the images' (width, height); ``buckets`` the buckets they went to. Square-only
    datasets in one square bucket are fine (None).
    """
    used = set(buckets)
    if len(used) != 1 or len(sizes) < 2:
        return None
    shapes = {round(math.log(w / h), 1) for w, h in sizes if w > 0 and h > 0}
    if len(shapes) < 2:
        return None
    (only,) = used
    return (
        f"all {len(sizes)} images land in one bucket, {bucket_label(only)}, though their aspect ratios differ: "
        "lower dataset.bucket_step (or raise the resolution) so each shape keeps its own"
    )
