"""The dataset a training run learned from, as part of what the run is: and what changed between two runs.

A run records its dataset in two places. Its LoRA files carry kohya's ``ss_*`` metadata
(``ss_dataset_dirs``: each folder's image count and repeats; ``ss_tag_frequency``: each
folder's tags), which every run has. A dataset manifest, ``runs/<id>/dataset.json``, names
each image with a hash of its bytes and of its caption (``MANIFEST`` below says the shape):
with it two runs also show which files were added, removed or re-captioned, and one
fingerprint of the whole set. Pure functions here; ``lorawb.matrix.lorafile.run_dataset``
reads a run folder into a ``RunDataset``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from lorawb.words import plural

# The manifest a run writes when it starts (runs/<id>/dataset.json), one object:
#   {"version": 1,
#    "images": [{"path": "10_zkx_mira/a.png",      # relative to the dataset folder, posix
#                "sha256": "<hex of the image's bytes>",
#                "caption_sha256": "<hex of the caption's text, UTF-8>" | null,
#                "repeats": 10}, ...]}
MANIFEST = "dataset.json"


@dataclass(frozen=True)
class Folder:
    name: str
    images: int
    repeats: int


@dataclass
class RunDataset:
    """What one run trained on: its folders (images, repeats), tag counts, and its files when recorded."""

    folders: dict[str, Folder] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)  # tag -> captions naming it, over every folder
    files: dict[str, str] | None = None  # path -> image hash + caption hash (from the manifest), or None
    source: str = ""  # where it was read from

    @property
    def images(self) -> int:
        return sum(f.images for f in self.folders.values()) if self.folders else len(self.files or {})

    @property
    def steps_per_epoch(self) -> int:
        return sum(f.images * f.repeats for f in self.folders.values())

    @property
    def fingerprint(self) -> str | None:
        """One short hash of every file (image and caption bytes) the run trained on; None when not recorded."""
        if self.files is None:
            return None
        blob = "\n".join(f"{p}\t{h}" for p, h in sorted(self.files.items()))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def from_metadata(meta: dict[str, str], source: str = "") -> RunDataset | None:
    """The dataset of a LoRA file's kohya metadata (None when it has none)."""
    dirs = _json(meta.get("ss_dataset_dirs"))
    if not isinstance(dirs, dict) or not dirs:
        return None
    folders = {}
    for name, d in dirs.items():
        if isinstance(d, dict):
            folders[str(name)] = Folder(str(name), int(d.get("img_count", 0)), int(d.get("n_repeats", 1)))
    tags: dict[str, int] = {}
    freq = _json(meta.get("ss_tag_frequency"))
    if isinstance(freq, dict):
        for per_folder in freq.values():
            if isinstance(per_folder, dict):
                for tag, n in per_folder.items():
                    tags[str(tag)] = tags.get(str(tag), 0) + int(n)
    return RunDataset(folders, tags, None, source)


def manifest(images: list[tuple[str, str, str | None, int]]) -> dict[str, Any]:
    """The manifest of (path relative to the dataset folder, image sha256, caption text or None, repeats)."""
    rows = [
        {
            "path": path,
            "sha256": digest,
            "caption_sha256": None if caption is None else hashlib.sha256(caption.encode("utf-8")).hexdigest(),
            "repeats": repeats,
        }
        for path, digest, caption, repeats in sorted(images)
    ]
    return {"version": 1, "images": rows}


def with_manifest(ds: RunDataset | None, manifest: dict[str, Any], source: str = "") -> RunDataset:
    """``ds`` with the files of a dataset manifest (its folders from the manifest when ``ds`` is None)."""
    files: dict[str, str] = {}
    folders: dict[str, list[int]] = {}
    for row in manifest.get("images", []):
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            continue
        path = row["path"]
        files[path] = f"{row.get('sha256', '')}:{row.get('caption_sha256') or ''}"
        name = path.rsplit("/", 1)[0] if "/" in path else "."
        f = folders.setdefault(name, [0, int(row.get("repeats", 1))])
        f[0] += 1
    if ds is None:
        ds = RunDataset({n: Folder(n, c, r) for n, (c, r) in folders.items()}, {}, None, source)
    ds.files = files
    ds.source = ", ".join(s for s in (ds.source, source) if s)
    return ds


@dataclass(frozen=True)
class Change:
    """One row of a dataset comparison: what, run A's, run B's."""

    what: str
    a: str
    b: str


def _names(paths: list[str], n: int = 3) -> str:
    shown = ", ".join(p.rsplit("/", 1)[-1] for p in paths[:n])
    return shown + (f" +{len(paths) - n}" if len(paths) > n else "")


def dataset_changes(a: RunDataset | None, b: RunDataset | None) -> list[Change]:
    """What differs between two runs' datasets (empty: the same, as far as both record).

    Image counts, each folder's images and repeats, steps per epoch, tags that appear in one
    only (or whose count changed), and with both manifests the files added, removed and
    changed, and the fingerprints.
    """
    if a is None and b is None:
        return []
    if a is None or b is None:
        missing = "not recorded (no LoRA file yet)"
        return [
            Change(
                "dataset",
                missing if a is None else f"{a.images} images",
                missing if b is None else f"{b.images} images",
            )
        ]
    rows: list[Change] = []
    if a.images != b.images:
        rows.append(Change("dataset: images", str(a.images), str(b.images)))
    for name in list(a.folders) + [n for n in b.folders if n not in a.folders]:
        fa, fb = a.folders.get(name), b.folders.get(name)
        if fa != fb:

            def show(f: Folder | None) -> str:
                return "-" if f is None else f"{plural(f.images, 'image')} × {plural(f.repeats, 'repeat')}"

            rows.append(Change(f"dataset: {name}/", show(fa), show(fb)))
    if a.steps_per_epoch != b.steps_per_epoch:
        rows.append(Change("dataset: steps per epoch", str(a.steps_per_epoch), str(b.steps_per_epoch)))
    only_a = sorted(t for t in a.tags if t not in b.tags)
    only_b = sorted(t for t in b.tags if t not in a.tags)
    if only_a or only_b:
        rows.append(Change("dataset: tags only here", ", ".join(only_a) or "-", ", ".join(only_b) or "-"))
    recounted = sorted(t for t in a.tags if t in b.tags and a.tags[t] != b.tags[t])
    if recounted:
        shown = recounted[:6]
        more = f" +{len(recounted) - 6}" if len(recounted) > 6 else ""
        rows.append(
            Change(
                "dataset: tag counts",
                ", ".join(f"{t} {a.tags[t]}" for t in shown) + more,
                ", ".join(f"{t} {b.tags[t]}" for t in shown) + more,
            )
        )
    if a.files is not None and b.files is not None:
        added = sorted(p for p in b.files if p not in a.files)
        removed = sorted(p for p in a.files if p not in b.files)
        changed = sorted(p for p in a.files if p in b.files and a.files[p] != b.files[p])
        if added:
            rows.append(Change("dataset: files added", "-", f"{len(added)}: {_names(added)}"))
        if removed:
            rows.append(Change("dataset: files removed", f"{len(removed)}: {_names(removed)}", "-"))
        if changed:
            rows.append(
                Change("dataset: files changed (image or caption)", f"{len(changed)}: {_names(changed)}", "same names")
            )
        if a.fingerprint != b.fingerprint:
            rows.append(Change("dataset: fingerprint", a.fingerprint or "-", b.fingerprint or "-"))
    elif rows and (a.files is None or b.files is None):
        rows.append(
            Change(
                "dataset: files",
                "listed" if a.files is not None else "not recorded",
                "listed" if b.files is not None else "not recorded",
            )
        )
    return rows


def describe(ds: RunDataset | None) -> str:
    """One line: '35 images in 1 folder, 350 steps per epoch, fingerprint 3fa2…'."""
    if ds is None:
        return "dataset not recorded (no LoRA file yet)"
    text = f"{plural(ds.images, 'image')} in {plural(len(ds.folders), 'folder')}, {ds.steps_per_epoch} steps per epoch"
    if ds.fingerprint:
        text += f", fingerprint {ds.fingerprint}"
    return text
