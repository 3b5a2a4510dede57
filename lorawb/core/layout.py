"""Where images and captions are in a kohya-style dataset folder (no image decoding here).

    dataset/10_zkx_mira/img_001.png   + img_001.txt   (10 repeats per epoch)
    dataset/rejected/...              triage rejects, skipped by scans

A caption is the same-stem ``.txt`` file, or ``.caption`` when no .txt exists.
Hidden files/folders and ``rejected/`` are skipped; symlink loops are survived.

Symbolic links to folders are followed, within what the project means (``link_refusal``):
never to ``/`` or to a folder that holds the one being walked (the project, its parents:
a loop through everything), never into ``/proc``, ``/sys`` or ``/dev``, and at most
``LINKED_FOLDERS`` folders reached through links per walk. What is not followed is
reported (``LINK_NOT_FOLLOWED``: the doctor lists it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
CAPTION_EXTS = (".txt", ".caption")
# A caption is a line of tags or a few sentences: past this it is not one (a 50 MB "caption" made a
# 2-step run take 131 s and 11 GB). Readers stop here (fsutil.read_text's limit); the doctor names them.
CAPTION_MAX_BYTES = 64 * 1024
REJECTED = "rejected"
FOLDER_ERROR = "cannot list folder"
LINK_NOT_FOLLOWED = "symbolic link not followed"
LINKED_FOLDERS = 10_000  # folders one walk enters through symbolic links, at most
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")
LIMIT_REACHED = f"the scan reached its limit of {LINKED_FOLDERS:,} folders through symbolic links; the rest is left out"
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
    cannot be listed, image names that are broken symbolic links, and folder links not followed
    (``link_refusal``, the ``LINKED_FOLDERS`` limit). With ``captions``, the caption files met on
    the way are collected there (saves a second walk for orphan checks).
    """
    seen: set[tuple[int, int]] = set()
    root_real = os.path.realpath(root)
    linked = 0
    over = False  # the limit was reported (once)

    def limit(path: Path) -> None:
        nonlocal over
        if errors is not None and not over:
            errors.append((path, f"{LINK_NOT_FOLLOWED}: {LIMIT_REACHED}"))
        over = True

    def walk(d: Path, top: bool, via_link: bool = False) -> Iterator[Path]:
        nonlocal linked
        try:
            st = d.stat()
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return
        seen.add(key)
        if via_link:
            linked += 1
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            if errors is not None:
                errors.append((d, f"{FOLDER_ERROR}: {exc.strerror or exc}"))
            return
        subdirs: list[tuple[Path, bool]] = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    if top and skip_rejected and e.name == REJECTED:
                        continue
                    link = e.is_symlink()
                    if link:
                        why = link_refusal(os.path.realpath(e.path), root_real)
                        if why is not None:
                            if errors is not None:
                                errors.append((Path(e.path), f"{LINK_NOT_FOLLOWED}: {why}"))
                            continue
                    subdirs.append((Path(e.path), link or via_link))
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
        for sd, through_link in subdirs:
            if through_link and linked >= LINKED_FOLDERS:
                limit(sd)
                continue
            yield from walk(sd, False, through_link)

    yield from walk(root, True)


def link_refusal(target: str, root: str) -> str | None:
    """Why a folder link whose real path is ``target`` is not followed by a walk of ``root`` (a real
    path too); None when it is. A link to ``/``, to ``root`` or a folder holding it, or into the
    system's virtual folders would make a scan of the dataset a scan of the whole machine."""
    if target == os.sep:
        return "it leads to / (the whole disk)"
    if root == target or root.startswith(target.rstrip(os.sep) + os.sep):
        return f"it leads to {target}, a folder that holds this one (the project itself, or above it)"
    for system in SYSTEM_FOLDERS:
        if target == system or target.startswith(system + os.sep):
            return f"it leads into {system} (the system's own files)"
    return None


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
