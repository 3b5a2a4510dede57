"""Where images and captions are in a kohya-style dataset folder (no image decoding here).

    dataset/10_zkx_mira/img_001.png   + img_001.txt   (10 repeats per epoch)
    dataset/rejected/...              triage rejects, skipped by scans

A caption is the same-stem ``.txt`` file, or ``.caption`` when no .txt exists.
Hidden files/folders and ``rejected/`` are skipped; symlink loops are survived.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
CAPTION_EXTS = (".txt", ".caption")
REJECTED = "rejected"
FOLDER_ERROR = "cannot list folder"
_REPEATS = re.compile(r"^(\d+)_(.+)$")


def is_image(path: Path | str) -> bool:
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTS


def folder_repeats(folder_name: str) -> tuple[int, str]:
    """kohya's ``N_name``: (N, name); other folders repeat once."""
    m = _REPEATS.match(folder_name)
    if m:
        return max(1, int(m.group(1))), m.group(2)
    return 1, folder_name


def repeats_for(rel_folder: str) -> int:
    """Repeats of an image in ``rel_folder`` (posix, relative to dataset/): the nearest N_ folder."""
    for part in reversed([p for p in rel_folder.split("/") if p]):
        n, _ = folder_repeats(part)
        if _REPEATS.match(part):
            return n
    return 1


def caption_path_for(image: Path) -> Path:
    """The caption file of an image: an existing .txt, else an existing .caption, else the .txt to create."""
    for ext in CAPTION_EXTS:
        p = image.with_suffix(ext)
        if p.exists():
            return p
    return image.with_suffix(".txt")


def walk_images(
    root: Path,
    *,
    skip_rejected: bool = True,
    errors: list[tuple[Path, str]] | None = None,
    captions: list[Path] | None = None,
) -> Iterator[Path]:
    """Every image file under ``root``, sorted per folder, following symlinks without looping.

    With ``errors``, what cannot be walked is reported there as (path, reason): folders that
    cannot be listed and image names that are broken symbolic links. With ``captions``, the
    caption files met on the way are collected there (saves a second walk for orphan checks).
    """
    seen: set[tuple[int, int]] = set()

    def walk(d: Path, top: bool) -> Iterator[Path]:
        try:
            st = d.stat()
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return
        seen.add(key)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            if errors is not None:
                errors.append((d, f"{FOLDER_ERROR}: {exc.strerror or exc}"))
            return
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    if not (top and skip_rejected and e.name == REJECTED):
                        subdirs.append(Path(e.path))
                elif e.is_file() and is_image(e.name):
                    yield Path(e.path)
                elif captions is not None and os.path.splitext(e.name)[1].lower() in CAPTION_EXTS and e.is_file():
                    captions.append(Path(e.path))
                elif errors is not None and e.is_symlink() and is_image(e.name) and not os.path.exists(e.path):
                    errors.append((Path(e.path), "broken symbolic link"))
            except OSError as exc:
                if errors is not None and is_image(e.name):
                    errors.append((Path(e.path), f"cannot read file: {exc.strerror or exc}"))
                continue
        for sd in subdirs:
            yield from walk(sd, False)

    yield from walk(root, True)


def walk_captions(root: Path, *, skip_rejected: bool = True) -> Iterator[Path]:
    """Every caption file under ``root`` (for orphan detection and bulk edits)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not (rel == "." and skip_rejected and d == REJECTED)
        )
        for f in sorted(filenames):
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in CAPTION_EXTS:
                yield Path(dirpath) / f
