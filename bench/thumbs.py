"""Thumbnail throughput and grid paint times for N images.

    PYTHONPATH=. python bench/thumbs.py [--n 1000] [--size 768] [--format jpg|png] [--threads T] [--keep DIR]

Prints:
- listing: Triage.items() on the N images (first call reads every image when the project is new),
  again (facts cache), and Triage.cached_items() (the DB alone, what the first paint shows);
- filter: apply_filter + sort over the N items (runs on the event loop in the app);
- thumbnails: grid-size thumbnails made from the originals (ThumbCache.get), images/s, 1 and T threads;
- paint: the Triage tab in a headless app (160x48): time from start until every visible grid cell has
  its thumbnail, with the disk cache cold and warm, and after jumping to the last image (warm);
- keys: with thumbnails made slowly (150 ms each, one loader thread), the time from a key to the
  cursor's move, against the time one screenful of thumbnails takes (what a key would cost if it
  waited for them). tests/tui/test_triage_tab.py asserts that keys never wait; this measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw  # noqa: E402

from lorawb.core.project import init_project  # noqa: E402
from lorawb.core.thumbs import ThumbCache  # noqa: E402
from lorawb.core.triage import Filter, Triage, apply_filter  # noqa: E402


def make_images(root: Path, n: int, size: int, fmt: str) -> None:
    folder = root / "dataset" / "10_bench"
    folder.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(0)
    base = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    for i in range(n):
        im = base.copy()
        d = ImageDraw.Draw(im)
        for _ in range(8):
            x, y = rnd.randrange(size), rnd.randrange(size)
            r = rnd.randrange(size // 16, size // 4)
            d.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rnd.randrange(256) for _ in range(3)))
        path = folder / f"img_{i:05d}.{fmt}"
        im.save(path, quality=90) if fmt == "jpg" else im.save(path, compress_level=1)
        path.with_suffix(".txt").write_text(f"bench, tag{i % 7}, context{i % 5}\n")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


async def paint_time(project, jump_to_end: bool = False) -> tuple[float, float, float | None]:
    """(start -> list shown, list shown -> every visible thumbnail drawn, jump to end -> drawn)."""
    from lorawb.tui.app import LorawbApp
    from lorawb.tui.widgets.image_grid import ImageGrid

    app = LorawbApp(project)
    t0 = time.perf_counter()
    async with app.run_test(size=(160, 48)) as pilot:
        grid = app.query_one(ImageGrid)
        while not grid.items:
            await asyncio.sleep(0.002)
        listed = time.perf_counter()
        while not grid.painted.is_set():
            await asyncio.sleep(0.002)
        first = time.perf_counter() - listed
        listed -= t0
        end = None
        if jump_to_end:
            grid.focus()
            await pilot.pause()
            t1 = time.perf_counter()
            grid.action_jump(-1)
            await asyncio.sleep(0)
            while not grid.painted.is_set():
                await asyncio.sleep(0.005)
            end = time.perf_counter() - t1
        for w in list(app.workers):
            w.cancel()
    return listed, first, end


async def key_latency(project, decode_s: float = 0.15) -> tuple[list[float], float]:
    """(seconds from each key to the cursor's move, seconds one screenful of thumbnails takes) with slow decoding."""
    from textual import events

    from lorawb.core import thumbs as thumbs_mod
    from lorawb.tui.app import LorawbApp
    from lorawb.tui.widgets import image_grid
    from lorawb.tui.widgets.image_grid import ImageGrid

    real, workers = thumbs_mod.make_thumbnail_png, image_grid._worker_count

    def slow(path, size):
        time.sleep(decode_s)
        return real(path, size)

    thumbs_mod.make_thumbnail_png, image_grid._worker_count = slow, lambda: 1
    shutil.rmtree(project.state_dir / "thumbs", ignore_errors=True)
    try:
        app = LorawbApp(project)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            grid = app.query_one(ImageGrid)
            while not grid.items:
                await asyncio.sleep(0.002)
            cols = grid.columns
            page = max(1, grid.scrollable_content_region.height // grid.cell_size[1]) * cols
            n = len(grid.items)
            plan = [("right", 1), ("down", 1 + cols), ("pagedown", min(n - 1, 1 + cols + page)), ("end", n - 1)]
            plan += [("home", 0)]
            latencies = []
            for key, expected in plan:
                t0 = time.perf_counter()
                app.post_message(events.Key(key, None))
                while grid.cursor != expected:
                    await asyncio.sleep(0.001)
                latencies.append(time.perf_counter() - t0)
            for w in list(app.workers):
                w.cancel()
        return latencies, page * decode_s
    finally:
        thumbs_mod.make_thumbnail_png, image_grid._worker_count = real, workers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=768, help="image side in pixels")
    ap.add_argument("--format", choices=["jpg", "png"], default="jpg")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", help="build the project here and keep it (default: a temp folder)")
    args = ap.parse_args()

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lorawb-bench-"))
    try:
        root = tmp / "proj"
        if not (root / "lorawb.toml").exists():
            project = init_project(root, trigger="bench")
            dt, _ = timed(lambda: make_images(root, args.n, args.size, args.format))
            print(f"made {args.n} {args.size}px {args.format} images in {dt:.1f}s")
        from lorawb.core.project import Project

        project = Project.load(root)
        print(f"cpus {os.cpu_count()}, threads {args.threads}")

        t = Triage(project)
        cold, items = timed(t.items)
        warm, items = timed(t.items)
        print(f"listing  first {cold * 1000:8.1f} ms   again {warm * 1000:8.1f} ms   ({len(items)} images)")
        db, _ = timed(t.cached_items)
        print(f"listing  from the state DB only (first paint): {db * 1000:.1f} ms")
        flt, _ = timed(lambda: apply_filter(items, Filter(has_tag="tag3"), sort="aspect"))
        print(f"filter   has-tag + sort by aspect: {flt * 1000:.1f} ms")

        from lorawb.tui.widgets.image_grid import GRID_BOX

        paths = [project.root / i.rel for i in items]
        cache = ThumbCache(project.state_dir)
        sample = paths[: min(len(paths), 200)]
        for threads in sorted({1, args.threads}):
            shutil.rmtree(cache.dir, ignore_errors=True)
            with ThreadPoolExecutor(threads) as pool:
                dt, _ = timed(lambda pool=pool: list(pool.map(lambda p: cache.get(p, GRID_BOX), sample)))
            print(f"thumbs   {len(sample)} from originals, {threads} thread(s): {len(sample) / dt:7.1f} images/s")
        shutil.rmtree(cache.dir, ignore_errors=True)
        dt, _ = timed(lambda: [cache.cached(p, GRID_BOX) for p in paths])
        print(f"lookup   cached() on {len(paths)} (no decoding): {dt * 1000:.1f} ms")

        os.environ.setdefault("LORAWB_THREADS", str(args.threads))
        listed, cold_paint, _ = asyncio.run(paint_time(project))
        print(f"app      start -> grid listed: {listed * 1000:8.1f} ms")
        print(f"paint    listed -> first screen drawn, disk cache cold: {cold_paint * 1000:8.1f} ms")
        listed, warm_paint, end_paint = asyncio.run(paint_time(project, jump_to_end=True))
        print(f"paint    listed -> first screen drawn, disk cache warm: {warm_paint * 1000:8.1f} ms")
        print(f"paint    jump to the last image (not yet in memory): {end_paint * 1000:8.1f} ms")
        lat, screenful = asyncio.run(key_latency(project))
        print(
            f"keys     slow thumbnails (150 ms each): key -> cursor moved, max {max(lat) * 1000:.1f} ms, "
            f"median {sorted(lat)[len(lat) // 2] * 1000:.1f} ms; a screenful of thumbnails {screenful:.2f} s "
            f"(max key / screenful = {max(lat) / screenful:.3f})"
        )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
