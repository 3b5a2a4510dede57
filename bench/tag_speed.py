"""Images per second of the WD ONNX tagger path against the one-image-at-a-time loop a user would write.

    OMP_NUM_THREADS=1 LORAWB_THREADS=1 PYTHONPATH=. python bench/tag_speed.py [-n 48] [--size 1024]

Both run the same model (a random convolution stack at the WD input size, 448 px, built
with onnx.helper: ``lorawb.tagger.tiny.write_conv_tagger``) over the same images (half
JPEG, half PNG, SDXL-sized by default) with the same onnxruntime threads. The reference
decodes an image, prepares it as taggers' scripts do (composite on white, pad, bicubic
resize, BGR) and runs the model on it, then the next: kohya's script without its data
loader, taggui's loop. lorawb's path (``lorawb.tagger.engine``) decodes and prepares in
worker threads (``LORAWB_THREADS``, default: the cores) while the model runs on the
previous batch; its preparation (``wd_input``) skips compositing opaque images, decodes
JPEGs at a reduced scale and box-reduces large images by a whole factor first (both
keep the image at least the model's size); it runs batches of ``--batch``. No cache.

The target is at least 2x on a CPU. Figures taken while other processes load the
machine are noisy; the ratio comes from one run, the two paths alternating.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(root: Path, n: int, size: int) -> list[str]:
    rng = np.random.default_rng(0)
    names = []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = np.stack([(xx * (i + 1)) % 256, (yy * 3 + i * 17) % 256, ((xx + yy) // 2) % 256], axis=-1)
        noise = rng.integers(0, 40, size=(size, size, 3))
        im = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
        name = f"img_{i:03d}.{'jpg' if i % 2 == 0 else 'png'}"
        im.save(root / name, quality=92) if name.endswith("jpg") else im.save(root / name, compress_level=6)
        names.append(name)
    return names


def plain_input(image: Image.Image, size: int) -> np.ndarray:
    """The WD preprocessing as taggers' own scripts write it: composite on white, pad, bicubic, BGR."""
    rgba = image.convert("RGBA")
    flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat.alpha_composite(rgba)
    rgb = flat.convert("RGB")
    side = max(rgb.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    return np.asarray(square.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)[:, :, ::-1]


def reference_loop(root: Path, names: list[str], session, input_name: str, output_name: str, size: int) -> float:
    started = time.perf_counter()
    for name in names:
        with Image.open(root / name) as im:
            x = np.ascontiguousarray(plain_input(im, size))[None]
        session.run([output_name], {input_name: x})
    return time.perf_counter() - started


def lorawb_path(root: Path, names: list[str], backend) -> float:
    from lorawb.tagger.engine import predict_images

    started = time.perf_counter()
    run = predict_images(root, names, backend)
    assert run.computed == len(names) and not run.skipped, run.skipped
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=48, help="images")
    ap.add_argument("--size", type=int, default=1024, help="image side (SDXL: 1024)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each path is kept")
    args = ap.parse_args()

    from lorawb.tagger.backends import BackendOptions
    from lorawb.tagger.tiny import write_conv_tagger
    from lorawb.tagger.wd import WDBackend

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = write_conv_tagger(root / "model", size=448)
        images = root / "images"
        images.mkdir()
        t = time.perf_counter()
        names = make_images(images, args.n, args.size)
        print(
            f"{args.n} images {args.size}x{args.size} (half JPEG, half PNG) written in {time.perf_counter() - t:.1f} s"
        )
        backend = WDBackend(model / "model.onnx", model / "selected_tags.csv", BackendOptions(batch_size=args.batch))
        single = WDBackend(model / "model.onnx", model / "selected_tags.csv", BackendOptions(batch_size=1))
        threads = os.environ.get("LORAWB_THREADS", "")
        print(
            f"model: {backend.name}; onnxruntime and decode threads: "
            + (f"LORAWB_THREADS={threads}" if threads else f"all {os.cpu_count()} cores")
        )
        session, size = backend.session, backend.size
        lorawb_path(images, names[:4], backend)  # warm up (first runs allocate)
        lorawb_path(images, names[:4], single)
        reference_loop(images, names[:4], session, backend.input_name, backend.output_name, size)
        ref, ours, ours1 = [], [], []
        for _ in range(args.rounds):
            ref.append(reference_loop(images, names, session, backend.input_name, backend.output_name, size))
            ours.append(lorawb_path(images, names, backend))
            ours1.append(lorawb_path(images, names, single))
        r, o, o1 = min(ref), min(ours), min(ours1)
        print(f"one image at a time (decode, prepare, run):      {args.n / r:6.1f} images/s")
        print(f"lorawb, decode threads + fast prepare, batch 1:  {args.n / o1:6.1f} images/s  ({r / o1:.2f}x)")
        print(
            f"lorawb, decode threads + fast prepare, batch {args.batch:<2}: {args.n / o:6.1f} images/s  ({r / o:.2f}x)"
        )
        print(f"speed-up of the default path (batch {args.batch}): {r / o:.2f}x (target >= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
