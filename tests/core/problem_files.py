"""A dataset holding one of every kind of problem file, made with Pillow (used by tests/core fixtures).

The layout (trigger ``zkx_mira``, resolution 512, min_resolution 256):

    dataset/
      top.png           640x480 noise          top.txt "zkx_mira, forest, watercolor"
      both.png          512x512                both.txt + both.caption (the .txt wins)
      stray.txt         orphan caption
      dangling.png      -> missing.png (broken symlink)
      .hidden.png       skipped
      10_mira/          repeats 10
        anim.gif        2 frames, no caption
        cmyk.jpg        CMYK                   UTF-16 caption
        corrupt.png     random bytes
        dup.png         same bytes as top.png
        empty.jpg       0 bytes
        gray16.png      16-bit grey (I;16)     gray16.caption (fallback)
        la.png          LA                     CRLF caption
        palette.png     P with transparency    latin-1 caption
        rgba.png        RGBA                   UTF-8 BOM caption
        rotated.jpg     600x400, EXIF orientation 6 (a 400x600 portrait)
        small.webp      128x96                 empty caption
        truncated.jpg / truncated.png          cut in half
        wrong_ext.jpg   a PNG named .jpg
        ünïcödé 名前.png
        orphan.txt
        sub/nested.bmp  repeats 10 from the parent folder
        sub/loop        -> .. (symlink loop)
        sub/selfloop.png -> itself
      5_other/          repeats 5
        bomb.png        a 100000x100000 PNG header (decompression bomb)
        ok.jpg          768x512
        bad\\xff.png     a file name that is not UTF-8
      rejected/         skipped: nope.png, nope.txt, corrupt.png
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from pathlib import Path

from PIL import Image

TRIGGER = "zkx_mira"


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = random.Random(seed)
    w, h = size
    channels = len(Image.new(mode, (1, 1)).getbands())
    data = rng.randbytes(w * h * channels)
    return Image.frombytes(mode, size, data)


def encoded(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge size, with a tiny IDAT: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


BAD_NAME = os.fsdecode(b"bad\xff.png")


def build_problem_dataset(ds: Path) -> None:
    mira = ds / "10_mira"
    sub = mira / "sub"
    other = ds / "5_other"
    rejected = ds / "rejected"
    for d in (sub, other, rejected):
        d.mkdir(parents=True, exist_ok=True)

    top = encoded(noise((640, 480), seed=1), "PNG")
    (ds / "top.png").write_bytes(top)
    (ds / "top.txt").write_text(f"{TRIGGER}, forest, watercolor", encoding="utf-8")
    Image.new("RGB", (512, 512), (200, 30, 30)).save(ds / "both.png")
    (ds / "both.txt").write_text(f"{TRIGGER}, beach", encoding="utf-8")
    (ds / "both.caption").write_text("ignored", encoding="utf-8")
    (ds / "stray.txt").write_text(f"{TRIGGER}, lost", encoding="utf-8")
    os.symlink("missing.png", ds / "dangling.png")
    Image.new("RGB", (64, 64)).save(ds / ".hidden.png")
    (ds / "notes.md").write_text("not part of the dataset", encoding="utf-8")

    frames = [Image.new("P", (320, 240), i) for i in (1, 2)]
    frames[0].save(mira / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.new("CMYK", (400, 400), (0, 128, 128, 0)).save(mira / "cmyk.jpg", quality=90)
    (mira / "cmyk.txt").write_bytes(f"{TRIGGER}, bar".encode("utf-16"))
    (mira / "corrupt.png").write_bytes(random.Random(7).randbytes(3000))
    (mira / "dup.png").write_bytes(top)
    (mira / "dup.txt").write_text(f"{TRIGGER}, forest", encoding="utf-8")
    (mira / "empty.jpg").write_bytes(b"")
    Image.new("I;16", (512, 256), 40000).save(mira / "gray16.png")
    (mira / "gray16.caption").write_text(f"{TRIGGER}, pixel art", encoding="utf-8")
    Image.new("LA", (300, 300), (120, 200)).save(mira / "la.png")
    (mira / "la.txt").write_bytes(f"{TRIGGER}, beach\r\n".encode())
    pal = Image.new("P", (512, 384), 0)
    pal.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    pal.paste(1, (100, 100, 200, 200))
    pal.save(mira / "palette.png", transparency=0)
    (mira / "palette.txt").write_bytes(f"{TRIGGER}, café".encode("latin-1"))
    Image.new("RGBA", (512, 512), (0, 0, 255, 128)).save(mira / "rgba.png")
    (mira / "rgba.txt").write_bytes(f"\ufeff{TRIGGER}, red scarf".encode())
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (600, 400), (10, 200, 10)).save(mira / "rotated.jpg", exif=exif.tobytes())
    (mira / "rotated.txt").write_text(f"a sentence about {TRIGGER} in a forest.", encoding="utf-8")
    Image.new("RGB", (128, 96), (5, 5, 5)).save(mira / "small.webp")
    (mira / "small.txt").write_text("  \n", encoding="utf-8")
    jpg = encoded(noise((256, 256), seed=2), "JPEG", quality=95)
    (mira / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    png = encoded(noise((256, 256), seed=3), "PNG")
    (mira / "truncated.png").write_bytes(png[: len(png) // 2])
    Image.new("RGB", (300, 300), (1, 2, 3)).save(mira / "wrong_ext.jpg", format="PNG")
    (mira / "wrong_ext.txt").write_text(f"{TRIGGER}, bar", encoding="utf-8")
    Image.new("RGB", (256, 256), (9, 9, 9)).save(mira / "ünïcödé 名前.png")
    (mira / "ünïcödé 名前.txt").write_text(f"{TRIGGER}, 名前", encoding="utf-8")
    (mira / "orphan.txt").write_text(f"{TRIGGER}, nobody", encoding="utf-8")
    Image.new("RGB", (512, 512), (50, 60, 70)).save(sub / "nested.bmp")
    (sub / "nested.txt").write_text(f"{TRIGGER}, spaceship", encoding="utf-8")
    os.symlink("..", sub / "loop")
    os.symlink("selfloop.png", sub / "selfloop.png")

    (other / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    Image.new("RGB", (768, 512), (90, 90, 200)).save(other / "ok.jpg")
    (other / "ok.txt").write_text(f"{TRIGGER}, spaceship, photo", encoding="utf-8")
    Image.new("RGB", (300, 300)).save(os.fsencode(other) + b"/" + os.fsencode(BAD_NAME), format="PNG")

    Image.new("RGB", (300, 300)).save(rejected / "nope.png")
    (rejected / "nope.txt").write_text("rejected", encoding="utf-8")
    (rejected / "corrupt.png").write_bytes(b"garbage")
