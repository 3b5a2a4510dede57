"""Time a cold scan, a warm rescan and a cached load of a generated N-image dataset.

    python bench/index_scan.py            # 2000 images of 256x256 (well under a minute)
    python bench/index_scan.py --n 10000  # the design's target size

"Cold" means an empty index (every image is read, hashed and decoded); the files
were just written, so they come from the OS page cache, not the disk. "Warm" is a
rescan of the unchanged folder: no image is opened, only stat calls and caption
re-stats. "Cached" is ``load_cached()``: the DB alone, what the app paints first.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from lorawb.core.index import ProjectIndex  # noqa: E402
from lorawb.core.project import init_project  # noqa: E402


def make_dataset(dataset: Path, n: int, size: int) -> None:
    """n JPEGs with captions in 10 kohya folders; a few distinct images, written over and over."""
    variants = []
    for i in range(8):
        im = Image.radial_gradient("L").resize((size, size)).convert("RGB")
        im = Image.blend(im, Image.new("RGB", (size, size), (30 * i, 80, 200 - 20 * i)), 0.5)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        variants.append(buf.getvalue())
    for k in range(10):
        (dataset / f"{k + 1}_folder{k}").mkdir()
    for i in range(n):
        folder = dataset / f"{i % 10 + 1}_folder{i % 10}"
        (folder / f"img_{i:05d}.jpg").write_bytes(variants[i % len(variants)])
        (folder / f"img_{i:05d}.txt").write_text(f"zkx_mira, tag{i % 50}, context{i % 7}\n", encoding="utf-8")


CPU: dict[str, float] = {}


def timed(fn, name: str = ""):
    """Wall time (returned) and CPU time of this process (kept in CPU: the build machine is shared)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    CPU[name] = time.process_time() - c
    return out, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    ap.add_argument("--keep", type=Path, help="build the project here and keep it")
    args = ap.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="lorawb-bench-"))
    try:
        project = init_project(base / "bench-project", trigger="zkx_mira")
        _, t_make = timed(lambda: make_dataset(project.dataset_dir, args.n, args.size))
        print(f"dataset: {args.n} images of {args.size}x{args.size} + captions, written in {t_make:.1f} s")
        print(f"scan threads: {os.environ.get('LORAWB_THREADS') or min(8, os.cpu_count() or 1)}")

        index = ProjectIndex(project)
        cold, t_cold = timed(index.refresh, "cold")
        warm, t_warm = timed(index.refresh, "warm")
        index.close()
        cached, t_cached = timed(lambda: ProjectIndex(project).load_cached(), "cached")

        assert len(cold.images()) == args.n and cold.opened == args.n, "cold scan must read every image"
        assert warm.opened == 0, "a warm rescan must not open any image"
        assert cached is not None and len(cached.images()) == args.n
        print(f"cold scan:    {t_cold:8.3f} s wall {CPU['cold']:8.3f} s CPU   {cold.opened} images opened")
        print(f"warm rescan:  {t_warm:8.3f} s wall {CPU['warm']:8.3f} s CPU   {warm.opened} images opened")
        print(f"load_cached:  {t_cached:8.3f} s wall {CPU['cached']:8.3f} s CPU   (DB only)")
        print(f"cold / warm:  {t_cold / t_warm:8.1f} x")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
