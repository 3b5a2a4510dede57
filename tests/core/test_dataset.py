"""The scanner on a folder of problem files: every image is indexed or reported, exactly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from lorawb.core import dataset
from lorawb.core.dataset import read_image_facts, scan_dataset
from lorawb.errors import ProjectError
from tests.core.problem_files import BAD_NAME, TRIGGER, noise

# rel: (width, height, mode, format, repeats, caption_rel)
EXPECTED_IMAGES = {
    "both.png": (512, 512, "RGB", "PNG", 1, "both.txt"),
    "top.png": (640, 480, "RGB", "PNG", 1, "top.txt"),
    "10_mira/anim.gif": (320, 240, "P", "GIF", 10, None),
    "10_mira/cmyk.jpg": (400, 400, "CMYK", "JPEG", 10, "10_mira/cmyk.txt"),
    "10_mira/dup.png": (640, 480, "RGB", "PNG", 10, "10_mira/dup.txt"),
    "10_mira/gray16.png": (512, 256, "I;16", "PNG", 10, "10_mira/gray16.caption"),
    "10_mira/la.png": (300, 300, "LA", "PNG", 10, "10_mira/la.txt"),
    "10_mira/palette.png": (512, 384, "P", "PNG", 10, "10_mira/palette.txt"),
    "10_mira/rgba.png": (512, 512, "RGBA", "PNG", 10, "10_mira/rgba.txt"),
    "10_mira/rotated.jpg": (400, 600, "RGB", "JPEG", 10, "10_mira/rotated.txt"),
    "10_mira/small.webp": (128, 96, "RGB", "WEBP", 10, "10_mira/small.txt"),
    "10_mira/wrong_ext.jpg": (300, 300, "RGB", "PNG", 10, "10_mira/wrong_ext.txt"),
    "10_mira/ünïcödé 名前.png": (256, 256, "RGB", "PNG", 10, "10_mira/ünïcödé 名前.txt"),
    "10_mira/sub/nested.bmp": (512, 512, "RGB", "BMP", 10, "10_mira/sub/nested.txt"),
    "5_other/ok.jpg": (768, 512, "RGB", "JPEG", 5, "5_other/ok.txt"),
}

EXPECTED_UNREADABLE = [
    ("dangling.png", "broken symbolic link"),
    ("10_mira/corrupt.png", "not a PNG, JPEG, WebP, BMP or GIF image (corrupt, or another format)"),
    ("10_mira/empty.jpg", "empty file (0 bytes)"),
    ("10_mira/truncated.jpg", "truncated: image file is truncated"),
    ("10_mira/truncated.png", "truncated: image file is truncated"),
    ("10_mira/sub/selfloop.png", "cannot read file: Too many levels of symbolic links"),
    ("5_other/bad\\xff.png", "the file name is not valid UTF-8; rename the file"),
    ("5_other/bomb.png", "refused as a possible decompression bomb: 10000000000 pixels, over the limit of"),
]


def test_every_image_is_indexed_or_reported(problem_project):
    result = scan_dataset(problem_project.dataset_dir)

    got = {f.rel: (f.width, f.height, f.mode, f.format, f.repeats, f.caption_rel) for f in result.images}
    assert got == EXPECTED_IMAGES
    # Walk order: top-level files, then folders by name; hidden files and rejected/ never appear.
    assert [f.rel for f in result.images] == list(EXPECTED_IMAGES)

    assert [rel for rel, _ in result.unreadable] == [rel for rel, _ in EXPECTED_UNREADABLE]
    for (rel, reason), (_, expected) in zip(result.unreadable, EXPECTED_UNREADABLE, strict=True):
        assert reason.startswith(expected), (rel, reason)
    # Every unreadable image file has facts (the index keeps them), broken links included.
    assert [f.rel for f in result.broken] == [rel for rel, _ in EXPECTED_UNREADABLE]
    assert all(f.error for f in result.broken)

    assert result.orphan_captions == ["stray.txt", "10_mira/orphan.txt"]
    assert result.non_utf8 == [("10_mira/cmyk.txt", "utf-16"), ("10_mira/palette.txt", "cp1252")]
    assert result.opened == len(EXPECTED_IMAGES) + len(EXPECTED_UNREADABLE) - 3  # not: 2 links, 1 bad name


def test_captions_are_read_in_any_encoding(problem_project):
    facts = scan_dataset(problem_project.dataset_dir).by_rel()
    rgba, la, pal, cmyk = (facts[f"10_mira/{n}"] for n in ("rgba.png", "la.png", "palette.png", "cmyk.jpg"))
    assert (rgba.caption_text, rgba.caption_encoding) == (f"{TRIGGER}, red scarf", "utf-8-sig")
    assert rgba.problems == ["caption starts with a byte-order mark (kohya reads it into the first tag)"]
    assert (la.caption_text, la.caption_encoding, la.caption_newline) == (f"{TRIGGER}, beach\n", "utf-8", "\r\n")
    assert (pal.caption_text, pal.caption_encoding) == (f"{TRIGGER}, café", "cp1252")
    assert pal.caption_lossy and not rgba.caption_lossy
    assert (cmyk.caption_text, cmyk.caption_encoding) == (f"{TRIGGER}, bar", "utf-16")
    assert facts["10_mira/small.webp"].caption_text == "  \n"
    assert facts["10_mira/anim.gif"].caption_text is None
    assert facts["both.png"].problems == ["caption: both .txt and .caption exist; the .txt is used"]
    assert facts["10_mira/wrong_ext.jpg"].problems == ["file is PNG but named .jpg"]
    assert facts["top.png"].problems == []


def test_duplicates_share_a_content_hash(problem_project):
    facts = scan_dataset(problem_project.dataset_dir).by_rel()
    assert facts["top.png"].content_hash == facts["10_mira/dup.png"].content_hash
    assert len(facts["top.png"].content_hash) == 64
    assert facts["top.png"].content_hash != facts["both.png"].content_hash


def test_exif_orientation_swaps_the_reported_size(tmp_path):
    for orientation, expected in [(1, (600, 400)), (3, (600, 400)), (6, (400, 600)), (8, (400, 600))]:
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.jpg"
        Image.new("RGB", (600, 400)).save(path, exif=exif.tobytes())
        facts = read_image_facts(path)
        assert (facts.width, facts.height) == expected, orientation
        assert facts.ok


def test_read_image_facts_never_raises(tmp_path):
    missing = read_image_facts(tmp_path / "nope.png")
    assert missing.error == "cannot read file: No such file or directory"
    folder = tmp_path / "dir.png"
    folder.mkdir()
    assert read_image_facts(folder).error.startswith("cannot read file:")
    garbage = tmp_path / "sig.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    facts = read_image_facts(garbage)
    assert not facts.ok and facts.problems[0] == facts.error


def test_bomb_limit_follows_pillow_setting(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(path)
    assert read_image_facts(path).ok
    # Between Pillow's limit and twice it Pillow only warns: we refuse there too.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow's own, in the zone where it only warns
        facts = read_image_facts(path)
    assert facts.error == (
        "refused as a possible decompression bomb: 40x40 = 1600 pixels, over the limit of 1000 "
        "(PIL.Image.MAX_IMAGE_PIXELS)"
    )
    assert (facts.width, facts.height) == (40, 40)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # now Pillow itself raises
    assert read_image_facts(path).error.startswith("refused as a possible decompression bomb: 1600 pixels")


def test_big_jpeg_is_verified_by_a_draft_decode(tmp_path):
    path = tmp_path / "big.jpg"
    noise((1024, 768), seed=5).save(path, quality=90)
    facts = read_image_facts(path)
    assert (facts.width, facts.height, facts.mode) == (1024, 768, "RGB")  # full size, not the draft's
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])
    assert read_image_facts(path).error.startswith("truncated:")


def test_missing_dataset_folder_is_a_project_error(tmp_path):
    with pytest.raises(ProjectError, match="the dataset folder does not exist"):
        scan_dataset(tmp_path / "nothing")


def test_threads_give_the_same_result(problem_project):
    one = scan_dataset(problem_project.dataset_dir, workers=1)
    many = scan_dataset(problem_project.dataset_dir, workers=4)
    assert one.images == many.images and one.unreadable == many.unreadable


def test_many_images_use_the_thread_pool(tmp_path):
    for i in range(20):
        Image.new("RGB", (32, 32), (i, 0, 0)).save(tmp_path / f"{i:02d}.png")
    calls = []
    result = scan_dataset(tmp_path, workers=3, progress=lambda done, total: calls.append((done, total)))
    assert [f.rel for f in result.images] == [f"{i:02d}.png" for i in range(20)]
    assert calls[0] == (0, 20) and calls[-1] == (20, 20) and len(calls) == 21


def test_reuse_skips_unchanged_images_but_rereads_their_caption(problem_project, monkeypatch):
    root = problem_project.dataset_dir
    first = scan_dataset(root).by_rel()
    opened = []
    real = dataset.read_image_facts
    monkeypatch.setattr(dataset, "read_image_facts", lambda p, r=None: opened.append(p) or real(p, r))
    (root / "top.txt").write_text(f"{TRIGGER}, changed", encoding="utf-8")

    def reuse(rel, size, mtime_ns):
        f = first.get(rel)
        return f if f and (f.size_bytes, f.mtime_ns) == (size, mtime_ns) else None

    again = scan_dataset(root, reuse=reuse)
    # Only the unreadable files (not offered for reuse here) are opened again.
    assert sorted(p.name for p in opened) == sorted(
        ["corrupt.png", "empty.jpg", "truncated.jpg", "truncated.png", "bomb.png"]
    )
    assert again.by_rel()["top.png"].caption_text == f"{TRIGGER}, changed"
    assert again.by_rel()["both.png"] is first["both.png"]  # untouched caption: the very same facts


def test_unicode_and_bad_names(problem_project):
    result = scan_dataset(problem_project.dataset_dir)
    assert "10_mira/ünïcödé 名前.png" in result.by_rel()
    assert BAD_NAME not in {rel for rel, _ in result.unreadable}  # stored escaped, never with surrogates
    for rel, _ in result.unreadable:
        rel.encode("utf-8")


def test_unlistable_folder_is_reported(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    Image.new("RGB", (8, 8)).save(locked / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    real_scandir = os.scandir

    def scandir(path):  # chmod 000 does not stop root, so refuse the listing here
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = scan_dataset(tmp_path)
    assert [f.rel for f in result.images] == ["b.png"]
    assert result.unreadable == [("locked", "cannot list folder: Permission denied")]


def test_path_outside_root_and_no_root(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    facts = read_image_facts(Path(tmp_path / "x.png"))
    assert (facts.rel, facts.folder, facts.repeats) == ("x.png", "", 1)


def test_other_formats_are_refused_without_being_decoded(tmp_path):
    # A TIFF or an EPS (which Pillow would hand to Ghostscript) named .png is reported, never opened as such.
    Image.new("RGB", (300, 300)).save(tmp_path / "tiff.png", format="TIFF")
    (tmp_path / "eps.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    result = scan_dataset(tmp_path)
    assert result.images == []
    assert result.unreadable == [
        ("eps.png", "not a PNG, JPEG, WebP, BMP or GIF image (corrupt, or another format)"),
        ("tiff.png", "not a PNG, JPEG, WebP, BMP or GIF image (corrupt, or another format)"),
    ]


def test_dataset_that_is_a_file(tmp_path):
    (tmp_path / "dataset").write_text("oops")
    with pytest.raises(ProjectError, match="the dataset folder is a file, not a folder"):
        scan_dataset(tmp_path / "dataset")
