"""Training data: the dataset's images and captions, buckets, caption transforms, batch order.

No torch at module level except in the image-loading helpers, so the pure parts
(captions, buckets, batch order) are cheap to unit-test.

Order is a pure function of (seed, epoch): every epoch lists each image
``repeats`` times (kohya ``N_name`` folders), groups them by bucket, shuffles
within buckets, cuts batches, and shuffles the batches. A position in that
stream is just (epoch, index), which is all resume needs to continue the data
order exactly. Per-image randomness (crop, flip, caption shuffle and dropout)
is seeded by (seed, epoch, index, slot) for the same reason.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb.core import layout
from lorawb.core.buckets import Bucket, BucketSettings, make_buckets
from lorawb.core.captions import tag_key, tags_of
from lorawb.core.characters import JOINER, Character, characters_in, group_label
from lorawb.core.dataset import load_image as decode_image
from lorawb.core.dataset import refuse_oversized_captions, walk_order
from lorawb.core.index import scan_folder
from lorawb.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from lorawb.train.config import DatasetSection, TrainConfig


@dataclass
class Item:
    """One training image: where it is, its caption, repeats, size and bucket."""

    path: Path
    folder: str  # the top-level dataset folder (kohya's per-folder tag frequency key)
    caption: str
    repeats: int
    width: int
    height: int
    bucket: Bucket = (0, 0)
    is_reg: bool = False  # a regularisation image (kohya's reg folders): prior_loss_weight, never the trigger
    content_hash: str = ""  # sha256 of the image's bytes (the index's), for the run's dataset manifest
    caption_text: str | None = None  # the caption file's text as read (None: no caption file)


@dataclass
class DatasetInfo:
    items: list[Item]
    val_items: list[Item]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    tag_frequency: dict[str, dict[str, int]] = field(default_factory=dict)
    dataset_dirs: dict[str, dict[str, int]] = field(default_factory=dict)
    reg_items: list[Item] = field(default_factory=list)  # balanced: their repeats total the training images'
    num_reg_images: int = 0  # reg images with their folders' repeats, before balancing (kohya's count)
    reg_dataset_dirs: dict[str, dict[str, int]] = field(default_factory=dict)
    reg_root: str = ""

    @property
    def num_images(self) -> int:
        return sum(it.repeats for it in self.items)

    @property
    def train_items(self) -> list[Item]:
        """What the batch stream draws from: the training images, then the (balanced) reg images."""
        return self.items + self.reg_items


# --- scanning -------------------------------------------------------------------------------------

MIN_SIDE = 8  # smaller images cannot be bucketed or encoded by the VAE


def scan_images(root: Path) -> Iterator[tuple[Path, str, int]]:
    """(image, top-level folder name, repeats) for every image under ``root``."""
    for img in layout.walk_images(root):
        rel = img.parent.relative_to(root).as_posix() if img.parent != root else ""
        top = rel.split("/")[0] if rel else ""
        yield img, top, layout.repeats_for(rel)


def one_line(text: str) -> str:
    """A caption as trained: newlines and runs of spaces become single spaces."""
    return " ".join(text.split())


def load_dataset(cfg: DatasetSection, seed: int) -> DatasetInfo:
    """Scan the dataset (and validation folder or split); unreadable images are skipped and reported."""
    root = Path(cfg.path)
    if not root.is_dir():
        raise ConfigError("dataset folder not found", path=root, hint="set dataset.path or add images to dataset/")
    items, skipped = _scan(root)
    val_items: list[Item] = []
    if cfg.validation_path:
        val_root = Path(cfg.validation_path)
        if not val_root.is_dir():
            raise ConfigError("validation folder not found", path=val_root, hint="fix dataset.validation_path")
        val_items, more = _scan(val_root)
        skipped += more
    elif cfg.validation_split > 0 and len(items) > 1:
        # A stable split: by a hash of the path, so adding images does not reshuffle it.
        ranked = sorted(items, key=lambda it: hashlib.sha1(f"{seed}:{it.path}".encode()).hexdigest())
        n_val = max(1, round(len(items) * cfg.validation_split))
        val_set = {id(it) for it in ranked[:n_val]}
        val_items = [it for it in items if id(it) in val_set]
        items = [it for it in items if id(it) not in val_set]
    if not items:
        raise ConfigError(
            "no training images found",
            path=root,
            hint="put images (png/jpg/webp) with same-stem .txt captions under dataset/, e.g. dataset/10_name/",
        )
    step = cfg.bucket_step
    for it in items + val_items:
        it.bucket = assign_bucket(it.width, it.height, cfg.resolution, step, cfg.buckets)
    if cfg.characters:
        groups = group_of(items, root, cfg)
        if cfg.joint_resolution:
            for it, g in zip(items, groups, strict=True):
                if JOINER in g:
                    it.bucket = assign_bucket(it.width, it.height, cfg.joint_resolution, step, cfg.buckets)
        if cfg.balance == "equal":
            balance_characters(items, groups)
    freq: dict[str, dict[str, int]] = {}
    dirs: dict[str, dict[str, int]] = {}
    for it in items:
        key = it.folder or "."
        counts = freq.setdefault(key, {})
        for tag in split_tags(it.caption):
            counts[tag] = counts.get(tag, 0) + 1
        d = dirs.setdefault(key, {"n_repeats": it.repeats, "img_count": 0})
        d["img_count"] += 1
    info = DatasetInfo(items=items, val_items=val_items, skipped=skipped, tag_frequency=freq, dataset_dirs=dirs)
    if cfg.reg_path and cfg.reg_path != NO_REG:
        load_reg(info, cfg)
    return info


# --- several characters ---------------------------------------------------------------------------


def run_characters(cfg: DatasetSection) -> list[Character]:
    """The run's characters as lorawb.core.characters sees them."""
    return [Character(c.name, c.trigger, (), tuple(c.folders)) for c in cfg.characters]


def group_of(items: list[Item], root: Path, cfg: DatasetSection) -> list[str]:
    """Each item's character group: ``mira``, ``mira+tom`` (a pair), or ``none``."""
    chars = run_characters(cfg)
    out = []
    for it in items:
        rel = it.path.parent.relative_to(root).as_posix() if it.path.parent != root else ""
        out.append(group_label(characters_in(rel, split_tags(it.caption), chars)))
    return out


def balance_characters(items: list[Item], groups: list[str]) -> dict[str, int]:
    """``balance = "equal"``: every character group (each character alone, each pair) gets as many
    images per epoch as the largest one; returns the count per group.

    Within a group an image's share follows its folder's repeats (kohya repeats set by hand still
    weigh it against the group's other images); the shares are rounded by largest remainder so a
    group's count is exactly the target, and no image drops below its own repeats. Images of no
    character (``none``) and of three characters or more keep their repeats (balancing is per
    character and per pair; a lone image of three must not be raised to the largest group).
    """
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        if g != "none" and g.count(JOINER) <= 1:
            members.setdefault(g, []).append(i)
    if not members:
        return {}
    totals = {g: sum(items[i].repeats for i in idx) for g, idx in members.items()}
    target = max(totals.values())
    for g, idx in members.items():
        exact = [target * items[i].repeats / totals[g] for i in idx]
        counts = [math.floor(x) for x in exact]
        order = sorted(range(len(idx)), key=lambda k: (-(exact[k] - counts[k]), k))
        for k in order[: target - sum(counts)]:
            counts[k] += 1
        for i, n in zip(idx, counts, strict=True):
            items[i].repeats = n
    return dict.fromkeys(members, target)


def group_counts(items: list[Item], groups: list[str]) -> dict[str, int]:
    """Images per epoch of each character group (repeats counted)."""
    out: dict[str, int] = {}
    for it, g in zip(items, groups, strict=True):
        out[g] = out.get(g, 0) + it.repeats
    return out


# --- regularisation images ------------------------------------------------------------------------

NO_REG = "none"  # dataset.reg_path value that turns the project's reg/ off


def class_tokens(folder: str) -> str:
    """kohya's class tokens of a reg (or DreamBooth) folder: ``10_woman`` -> ``woman``; no ``N_``: none."""
    _, name = layout.folder_repeats(folder)
    return name.strip() if name != folder else ""


def load_reg(info: DatasetInfo, cfg: DatasetSection) -> None:
    """Scan the reg folder into ``info`` as kohya does: ``N_class`` folders, a missing caption is the class.

    An image with neither a caption nor a class in its folder name is skipped (named). The reg
    images are then balanced against the training images (``balance_reg``).
    """
    root = Path(cfg.reg_path)
    if not root.is_dir():
        raise ConfigError(
            "regularisation folder not found",
            path=root,
            hint="fix dataset.reg_path, or set it to 'none' to train without reg images",
        )
    items, skipped = _scan(root)
    reg: list[Item] = []
    for it in items:
        it.is_reg = True
        if not it.caption:
            it.caption = class_tokens(it.folder)
            if not it.caption:
                skipped.append((it.path, "reg image without a caption or a class folder (name it N_class)"))
                continue
        it.bucket = assign_bucket(it.width, it.height, cfg.resolution, cfg.bucket_step, cfg.buckets)
        reg.append(it)
        d = info.reg_dataset_dirs.setdefault(it.folder or ".", {"n_repeats": it.repeats, "img_count": 0})
        d["img_count"] += 1
    info.skipped += skipped
    info.reg_root = str(root)
    info.num_reg_images = sum(it.repeats for it in reg)
    info.reg_items = balance_reg(reg, info.num_images)


def balance_reg(reg: list[Item], num_train: int) -> list[Item]:
    """The reg images an epoch uses, kohya's way: their repeats add up to the training images'.

    Walk the reg images in order, each with its folder's repeats, until the training count is
    reached (more reg images than that: the rest are unused this run); fewer: go round again
    adding one repeat per image until the counts match. The items are copies.
    """
    if not reg or num_train <= 0:
        return []
    out: list[Item] = []
    n, first = 0, True
    while n < num_train:
        for i, it in enumerate(reg):
            if first:
                out.append(replace(it))
                n += it.repeats
            else:
                out[i].repeats += 1
                n += 1
            if n >= num_train:
                break
        first = False
    return out


def _scan(root: Path) -> tuple[list[Item], list[tuple[Path, str]]]:
    """The folder as the project's one scanner sees it (through the index when it is a project's dataset).

    The trainer therefore refuses exactly what the doctor and Triage call unreadable, with the
    same reason, and never opens a file the safe reader would not (a PostScript file named .png
    never reaches Ghostscript). Captions are read up to ``layout.CAPTION_MAX_BYTES``; a larger one
    stops the run with the file named (CaptionError) rather than train that image uncaptioned.
    """
    scan = scan_folder(root)
    refuse_oversized_captions(scan)
    items: list[Item] = []
    skipped = [(root / rel, reason) for rel, reason in scan.unreadable]
    for f in scan.images:
        if f.width < MIN_SIDE or f.height < MIN_SIDE:
            skipped.append((root / f.rel, f"too small to train ({f.width}x{f.height})"))
            continue
        top = f.folder.split("/")[0]
        caption = one_line(f.caption_text) if f.caption_text is not None else ""
        items.append(
            Item(
                root / f.rel,
                top,
                caption,
                f.repeats,
                f.width,
                f.height,
                content_hash=f.content_hash or "",
                caption_text=f.caption_text,
            )
        )
    skipped.sort(key=lambda s: walk_order(s[0].relative_to(root).as_posix()))
    return items, skipped


def assign_bucket(width: int, height: int, resolution: int, step: int, buckets: bool = True) -> Bucket:
    if resolution < step:
        raise ConfigError(f"dataset.resolution {resolution} is smaller than dataset.bucket_step {step}")
    bucket = BucketSettings(resolution, step, buckets).bucket(width, height)
    assert bucket is not None
    return bucket


def bucket_table(resolution: int, step: int) -> tuple[Bucket, ...]:
    return make_buckets(resolution, step)


# --- captions -------------------------------------------------------------------------------------


def split_tags(caption: str) -> list[str]:
    return tags_of(caption)


def transform_caption(
    caption: str,
    trigger: str,
    rng: random.Random,
    *,
    keep_tokens: int = 1,
    shuffle: bool = False,
    tag_dropout: float = 0.0,
    caption_dropout: float = 0.0,
    add_trigger: bool = False,
    triggers: list[str] | tuple[str, ...] = (),
) -> str:
    """The caption an image is trained with this time.

    The trigger (when present, or added) goes first; the first ``keep_tokens``
    tags stay in place; the others may be dropped (``tag_dropout``) and
    shuffled. With probability ``caption_dropout`` the caption is empty
    (unconditional training, which keeps classifier-free guidance working).
    ``triggers`` (a joint run's characters, in order): every one the caption
    holds leads it, in that order, and is never shuffled or dropped.
    """
    if caption_dropout and rng.random() < caption_dropout:
        return ""
    tags = split_tags(caption)
    if triggers:
        order = {tag_key(t): i for i, t in enumerate(triggers)}
        held = sorted((t for t in tags if tag_key(t) in order), key=lambda t: order[tag_key(t)])
        if held:
            tags = held + [t for t in tags if tag_key(t) not in order]
            return _keep_then_vary(tags, max(keep_tokens, len(held)), rng, shuffle, tag_dropout)
    leads = False
    if trigger:
        # The one tag identity: ``zkx mira`` or ``Zkx_Mira`` in a caption is the trigger ``zkx_mira``.
        key = tag_key(trigger)
        at = next((i for i, t in enumerate(tags) if tag_key(t) == key), None)
        if at is not None:
            tags.insert(0, tags.pop(at))
            leads = True
        elif add_trigger:
            tags.insert(0, trigger)
            leads = True
    n_keep = keep_tokens
    if leads:
        n_keep = max(n_keep, 1)
    return _keep_then_vary(tags, n_keep, rng, shuffle, tag_dropout)


def _keep_then_vary(tags: list[str], n_keep: int, rng: random.Random, shuffle: bool, tag_dropout: float) -> str:
    kept, rest = tags[:n_keep], tags[n_keep:]
    if tag_dropout:
        rest = [t for t in rest if rng.random() >= tag_dropout]
    if shuffle:
        rng.shuffle(rest)
    return ", ".join(kept + rest)


def class_caption(caption: str, trigger: str, cls: str) -> str:
    """``caption`` with the trigger tag (as the tag identity matches it) replaced by the class word.

    A caption without the trigger comes back unchanged (output preservation skips that row).
    """
    if not trigger or not caption:
        return caption
    key = tag_key(trigger)
    tags = split_tags(caption)
    if not any(tag_key(t) == key for t in tags):
        return caption
    return ", ".join(cls if tag_key(t) == key else t for t in tags)


def captions_are_fixed(cfg: DatasetSection) -> bool:
    """True when every image's caption is the same each time (so text embeddings can be cached)."""
    return not cfg.shuffle_tags and cfg.tag_dropout == 0


def text_is_cached(cfg: TrainConfig) -> bool:
    """Does a run encode its captions once (the text cache) rather than every step?"""
    ds = cfg.dataset
    return ds.cache_text and captions_are_fixed(ds) and not cfg.network.train_text_encoder


# --- batch order ----------------------------------------------------------------------------------


def epoch_batches(items: list[Item], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The micro-batches (lists of item indices) of one epoch; same bucket within a batch."""
    rng = random.Random(f"order:{seed}:{epoch}")
    by_bucket: dict[Bucket, list[int]] = {}
    for i, it in enumerate(items):
        by_bucket.setdefault(it.bucket, []).extend([i] * it.repeats)
    batches: list[list[int]] = []
    for bucket in sorted(by_bucket):
        idx = by_bucket[bucket]
        rng.shuffle(idx)
        batches.extend(idx[j : j + batch_size] for j in range(0, len(idx), batch_size))
    rng.shuffle(batches)
    return batches


@dataclass
class Position:
    """Where the batch stream is: the next batch is batches(epoch)[index]."""

    epoch: int = 0
    index: int = 0


class BatchStream:
    """An endless stream of micro-batches, epoch after epoch, resumable from a Position."""

    def __init__(self, items: list[Item], batch_size: int, seed: int, pos: Position | None = None) -> None:
        self.items = items
        self.batch_size = batch_size
        self.seed = seed
        self.pos = Position(**vars(pos)) if pos else Position()
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

    def batches(self, epoch: int) -> list[list[int]]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, epoch_batches(self.items, self.batch_size, self.seed, epoch))
        return self._epoch_cache[1]

    @property
    def batches_per_epoch(self) -> int:
        return len(self.batches(0))

    def next(self) -> tuple[int, int, list[int]]:
        """(epoch, index in epoch, item indices) of the next micro-batch."""
        batches = self.batches(self.pos.epoch)
        if self.pos.index >= len(batches):
            self.pos = Position(self.pos.epoch + 1, 0)
            batches = self.batches(self.pos.epoch)
        epoch, index = self.pos.epoch, self.pos.index
        self.pos = Position(epoch, index + 1)
        return epoch, index, batches[index]


def total_steps(max_steps: int, epochs: int, batches_per_epoch: int, micro_per_step: int) -> int:
    """Optimizer steps to train: max_steps if set, else enough steps to cover ``epochs``."""
    if max_steps > 0:
        return max_steps
    return max(1, math.ceil(epochs * batches_per_epoch / micro_per_step))


def item_rng(seed: int, epoch: int, index: int, slot: int) -> random.Random:
    return random.Random(f"item:{seed}:{epoch}:{index}:{slot}")


# --- images ---------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """An image ready for the VAE: pixels in [-1, 1] (C, H, W), and SDXL's size/crop numbers."""

    pixels: torch.Tensor
    original_size: tuple[int, int]  # (h, w) before resizing
    crop_top_left: tuple[int, int]  # (top, left) in the resized image
    target_size: tuple[int, int]  # (h, w) of the bucket


def load_image(path: Path, bucket: Bucket, crop: str, flip: bool, rng: random.Random | None = None) -> Prepared:
    """Decode, EXIF-rotate, resize to cover the bucket (no stretching), crop, optionally flip."""
    import numpy as np
    import torch
    from PIL import Image

    bw, bh = bucket
    im = decode_image(path)  # the scanner's own safe reader, EXIF orientation applied
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16-bit grey: Pillow's RGB conversion clips at 255 (a white image); scale to 8 bits instead.
        grey = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(grey * (255.0 / 65535.0), 0, 255).astype(np.uint8))
    if im.mode == "RGBA" or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    im = im.convert("RGB")
    w, h = im.size
    scale = max(bw / w, bh / h)
    nw, nh = max(bw, round(w * scale)), max(bh, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    if crop == "random" and rng is not None:
        left, top = rng.randint(0, nw - bw), rng.randint(0, nh - bh)
    else:
        left, top = (nw - bw) // 2, (nh - bh) // 2
    im = im.crop((left, top, left + bw, top + bh))
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    arr = np.asarray(im, dtype=np.uint8)
    pixels = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
    return Prepared(pixels=pixels, original_size=(h, w), crop_top_left=(top, left), target_size=(bh, bw))


def file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tag_counts(items: list[Item]) -> Counter[str]:
    c: Counter[str] = Counter()
    for it in items:
        c.update(split_tags(it.caption))
    return c


def describe_buckets(items: list[Item]) -> dict[str, Any]:
    c: Counter[Bucket] = Counter(it.bucket for it in items)
    return {f"{w}x{h}": n for (w, h), n in sorted(c.items())}
