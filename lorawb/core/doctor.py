"""`lorawb doctor`: a health report of the dataset, built from the index.

What it checks: images per folder and kohya repeats, captions missing / empty /
orphaned / not UTF-8 / over 64 KB, unreadable images with the reason, images below the
project's ``min_resolution``, exact duplicates (same bytes), trigger coverage,
the aspect-ratio bucket histogram at the project's resolution, tag counts, and the
symbolic links a scan did not follow (to /, above the project, into /proc, past the
limit: lorawb.core.layout). Names holding control characters are printed quoted.

``DoctorReport.to_dict()`` is the JSON shape; ``render_text`` is plain text (the
CLI may colour it; core stays free of Rich).
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from lorawb.core.buckets import BucketSettings, bucket_label, one_bucket_warning
from lorawb.core.captions import Caption, phrase_pattern, tag_key, tag_name, tags_of, trigger_index
from lorawb.core.cast import THIN_CHARACTER, THIN_PAIR, Cast, held
from lorawb.core.characters import Character, characters_of
from lorawb.core.config import low_res_note
from lorawb.core.dataset import ImageFacts, Progress, ScanResult, oversized_captions, quoted_name, scan_dataset
from lorawb.core.layout import CAPTION_MAX_BYTES, LINK_NOT_FOLLOWED
from lorawb.core.project import STATE_DIR, Project
from lorawb.errors import LorawbError
from lorawb.words import plural, size_text


@dataclass
class FolderStats:
    folder: str  # "" is the top of dataset/
    repeats: int
    images: int

    @property
    def steps(self) -> int:
        """Images seen per epoch from this folder (images x repeats), as kohya counts them."""
        return self.images * self.repeats


@dataclass
class TrainingFacts:
    """The trainer's reading of lorawb.toml, as the doctor reports it.

    Built by ``lorawb.train.doctor.training_facts`` and handed to ``diagnose`` (core never imports
    train): the settings a run would refuse, the trainer's buckets, its warnings, the reg folder.
    """

    errors: list[LorawbError] = field(default_factory=list)  # as `lorawb train` says them (file:line: key)
    buckets: BucketSettings | None = None  # None: the project's resolution, default step (not read)
    warnings: list[str] = field(default_factory=list)  # a resolution far from the model's
    reg_path: str = "none"  # the reg folder a run started now would use
    prior_loss_weight: float = 1.0


@dataclass
class RegFolder:
    folder: str
    repeats: int
    images: int
    class_tokens: str  # from the N_class folder name: the caption of its images that have none
    captioned: int  # images with a caption of their own


@dataclass
class RegReport:
    """The regularisation images as the trainer will use them (kohya's reg folders)."""

    path: str
    prior_loss_weight: float
    folders: list[RegFolder] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)  # no caption and no class in the folder name
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images(self) -> int:
        return sum(f.images for f in self.folders)

    @property
    def steps(self) -> int:
        """Reg images with their folders' repeats (kohya's num_reg_images), before balancing."""
        return sum(f.images * f.repeats for f in self.folders)


@dataclass
class CastRow:
    """A character alone or a pair together, as the doctor reports it."""

    label: str
    images: int
    values: dict[str, dict[str, int]]  # tag group -> value -> images naming it
    cells: int  # context x style cells with at least one image


@dataclass
class DoctorReport:
    project: str
    dataset_dir: str
    trigger: str
    resolution: int
    min_resolution: int
    images: int = 0  # usable images
    image_files: int = 0  # every image file (usable or not): the count every view shows
    folders: list[FolderStats] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (rel, reason)
    links_not_followed: list[tuple[str, str]] = field(default_factory=list)  # (folder link rel, why)
    captions_too_large: list[tuple[str, int]] = field(default_factory=list)  # (caption rel, bytes): never read
    captions_missing: list[str] = field(default_factory=list)  # image rels
    captions_empty: list[str] = field(default_factory=list)  # image rels
    orphan_captions: list[str] = field(default_factory=list)  # caption rels
    non_utf8_captions: list[tuple[str, str]] = field(default_factory=list)  # (caption rel, encoding)
    bom_captions: list[str] = field(default_factory=list)  # caption rels starting with a UTF-8 BOM
    low_resolution: list[tuple[str, int, int]] = field(default_factory=list)  # (rel, width, height)
    duplicates: list[list[str]] = field(default_factory=list)  # groups of images with identical bytes
    captions_counted: int = 0  # non-empty captions of usable images
    trigger_first: int = 0  # captions that start with the trigger
    trigger_anywhere: int = 0  # captions that contain it anywhere (first included)
    without_trigger: list[str] = field(default_factory=list)  # image rels whose caption lacks it
    trigger_not_first: list[str] = field(default_factory=list)  # image rels: trigger present, not first
    buckets: list[tuple[str, int]] = field(default_factory=list)  # (bucket label, images), by aspect ratio
    tags_distinct: int = 0
    tags_total: int = 0
    top_tags: list[tuple[str, int]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (rel, note): other per-image findings
    config_errors: list[str] = field(default_factory=list)  # lorawb.toml's training settings: file:line: key: what
    training_warnings: list[str] = field(default_factory=list)  # resolution far from the model's, one bucket
    reg: RegReport | None = None  # the regularisation images, when the run would use some
    # Several characters ([characters.<name>] tables; lorawb.core.cast): empty in a one-character project.
    characters: list[CastRow] = field(default_factory=list)
    cells_total: int = 0  # context x style cells (the first two tag groups), 0 without two groups
    character_warnings: list[str] = field(default_factory=list)  # thin characters and pairs
    caption_checks: list[tuple[str, str]] = field(default_factory=list)  # (rel, note): triggers and invariants
    no_character: list[str] = field(default_factory=list)  # images no folder or trigger gives a character

    @property
    def steps_per_epoch(self) -> int:
        return sum(f.steps for f in self.folders)

    @property
    def problem_count(self) -> int:
        """Findings worth fixing before training (the trigger counts only when one is set)."""
        n = (
            len(self.unreadable)
            + len(self.links_not_followed)
            + len(self.captions_too_large)
            + len(self.captions_missing)
            + len(self.captions_empty)
            + len(self.orphan_captions)
            + len(self.non_utf8_captions)
            + len(self.low_resolution)
            + sum(len(g) - 1 for g in self.duplicates)
            + len(self.config_errors)
            + len(self.character_warnings)
            + len(self.caption_checks)
            + len(self.no_character)
        )
        if self.trigger:
            n += len(self.without_trigger) + len(self.trigger_not_first)
        if self.reg is not None:
            n += len(self.reg.unusable) + len(self.reg.unreadable)
        return n

    def to_dict(self) -> dict:
        """The JSON shape of `lorawb doctor --json` (lists of objects, stable key names)."""
        d = asdict(self)
        d["folders"] = [
            {"folder": f.folder, "repeats": f.repeats, "images": f.images, "steps": f.steps} for f in self.folders
        ]
        d["unreadable"] = [{"path": rel, "reason": reason} for rel, reason in self.unreadable]
        d["links_not_followed"] = [{"path": rel, "reason": why} for rel, why in self.links_not_followed]
        d["captions_too_large"] = [{"path": rel, "bytes": n} for rel, n in self.captions_too_large]
        d["non_utf8_captions"] = [{"path": rel, "encoding": enc} for rel, enc in self.non_utf8_captions]
        d["low_resolution"] = [{"path": rel, "width": w, "height": h} for rel, w, h in self.low_resolution]
        d["buckets"] = [{"bucket": label, "images": n} for label, n in self.buckets]
        d["top_tags"] = [{"tag": tag, "count": n} for tag, n in self.top_tags]
        d["notes"] = [{"path": rel, "note": note} for rel, note in self.notes]
        if self.characters:
            d["caption_checks"] = [{"path": rel, "note": note} for rel, note in self.caption_checks]
        else:  # a one-character project: the JSON shape it always had
            for key in ("characters", "cells_total", "character_warnings", "caption_checks", "no_character"):
                del d[key]
        d["steps_per_epoch"] = self.steps_per_epoch
        d["problem_count"] = self.problem_count
        if self.reg is not None:
            d["reg"]["unreadable"] = [{"path": rel, "reason": why} for rel, why in self.reg.unreadable]
            d["reg"]["images"] = self.reg.images
            d["reg"]["num_reg_images"] = self.reg.steps
            d["reg"]["used_per_epoch"] = min(self.reg.steps, self.steps_per_epoch) if self.reg.steps else 0
        return d


# --- building the report ----------------------------------------------------------


def diagnose(
    project: Project,
    scan: ScanResult | None = None,
    progress: Progress | None = None,
    training: TrainingFacts | None = None,
) -> DoctorReport:
    """Scan (through the index, incrementally) and report on ``project``'s dataset.

    ``scan``: report on this scan instead; ``progress(done, total)`` follows the scan; ``training``:
    the trainer's reading of lorawb.toml (``lorawb.train.doctor.doctor`` passes it; without it the
    training settings are not checked and buckets use the project's resolution).
    """
    reg_scan: ScanResult | None = None
    if scan is None:
        scan, reg_scan = _scan(project, progress)
    cfg = project.config.project
    training = training or TrainingFacts()
    buckets = training.buckets or BucketSettings(
        cfg.resolution, problem="buckets not known: training settings not read"
    )
    report = DoctorReport(
        project=project.name,
        dataset_dir=str(project.dataset_dir),
        trigger=project.trigger,
        resolution=buckets.resolution,
        min_resolution=cfg.min_resolution,
        images=len(scan.images),
        image_files=len(scan.images) + len(scan.broken),
        unreadable=[(rel, why) for rel, why in scan.unreadable if not why.startswith(LINK_NOT_FOLLOWED)],
        links_not_followed=[
            (rel, why.removeprefix(LINK_NOT_FOLLOWED + ": "))
            for rel, why in scan.unreadable
            if why.startswith(LINK_NOT_FOLLOWED)
        ],
        captions_too_large=oversized_captions(scan.images + scan.broken),
        orphan_captions=list(scan.orphan_captions),
        non_utf8_captions=list(scan.non_utf8),
    )
    report.config_errors = [_error_line(e) for e in training.errors]
    report.folders = _folders(scan.images)
    chars = characters_of(project.config)
    if len(chars) > 1:
        report.trigger = ""  # each character's trigger: the cast's checks
    _captions(report, scan.images, report.trigger, [c.trigger for c in chars])
    _cast(report, scan.images, chars, project.config.tags.groups)
    report.low_resolution = [(f.rel, f.width, f.height) for f in scan.images if f.short_side < cfg.min_resolution]
    report.duplicates = _duplicates(scan.images)
    report.buckets = _buckets(scan.images, buckets)
    report.training_warnings = _training_warnings(training.warnings, scan.images, buckets)
    report.notes = [
        (f.rel, p)
        for f in scan.images
        for p in f.problems
        # Already listed in their own sections:
        if "not UTF-8" not in p
        and "byte-order mark" not in p
        and not (p.startswith("caption unreadable") and f.caption_size > CAPTION_MAX_BYTES)
    ]
    report.reg = _reg(project, reg_scan, training)
    return report


def _scan(project: Project, progress: Progress | None) -> tuple[ScanResult, ScanResult | None]:
    """The dataset (and the project's reg/ when it has one), through the index in one refresh."""
    from lorawb.core.index import DATASET, REG, ProjectIndex

    def plain() -> tuple[ScanResult, ScanResult | None]:
        reg = scan_dataset(project.reg_dir) if project.reg_dir.is_dir() else None
        return scan_dataset(project.dataset_dir, progress=progress), reg

    index = ProjectIndex(project)
    try:
        snap = index.refresh(progress)
        return snap.scan_result(DATASET), snap.scan_result(REG) if snap.area(REG) else None
    except (sqlite3.Error, OSError):
        # A read-only project (or a broken .lorawb/) must still get a report: scan without the index.
        return plain()
    except LorawbError as exc:
        state_dir = project.root / STATE_DIR  # not project.state_dir: that one creates the folder
        if exc.path is not None and state_dir in (exc.path, *exc.path.parents):
            return plain()
        raise
    finally:
        index.close()


def _reg(project: Project, scan: ScanResult | None, training: TrainingFacts) -> RegReport | None:
    """The reg images a run started now would use (``dataset.reg_path``, default the project's reg/)."""
    from pathlib import Path

    from lorawb.core.layout import folder_repeats

    if not training.reg_path or training.reg_path == "none":
        return None
    root = Path(training.reg_path)
    weight = training.prior_loss_weight
    if not root.is_dir():
        return RegReport(str(root), weight, unreadable=[(str(root), "folder not found")])
    if scan is None or root.resolve() != project.reg_dir.resolve():
        scan = scan_dataset(root)
    report = RegReport(_shown(project, root), weight, unreadable=list(scan.unreadable))
    folders: dict[str, RegFolder] = {}
    for f in scan.images:
        top = f.folder.split("/")[0]
        _, name = folder_repeats(top)
        tokens = name.strip() if name != top else ""
        has_caption = bool((f.caption_text or "").strip())
        if not has_caption and not tokens:
            report.unusable.append(f.rel)
            continue
        entry = folders.setdefault(top, RegFolder(top, f.repeats, 0, tokens, 0))
        entry.images += 1
        entry.captioned += has_caption
    report.folders = [folders[k] for k in sorted(folders)]
    return report


def _shown(project: Project, path: object) -> str:
    from pathlib import Path

    p = Path(str(path))
    try:
        return p.resolve().relative_to(project.root.resolve()).as_posix() + "/"
    except ValueError:
        return str(p)


def _folders(images: list[ImageFacts]) -> list[FolderStats]:
    counts: dict[str, FolderStats] = {}
    for f in images:
        stats = counts.setdefault(f.folder, FolderStats(folder=f.folder, repeats=f.repeats, images=0))
        stats.images += 1
    return [counts[k] for k in sorted(counts)]


def split_tags(text: str) -> list[str]:
    """Tags of a caption: split on commas (and line ends), stripped, empty ones dropped."""
    return tags_of(text)


def trigger_position(text: str, trigger: str) -> str:
    """'first', 'elsewhere' or 'absent', by the one tag identity (``blue_hair`` is ``Blue Hair``).

    A sentence counts as first when it starts with the trigger as whole words.
    """
    if not trigger:
        return "absent"
    i = trigger_index(Caption.parse(text), trigger)
    if i == 0:
        return "first"
    if i is not None or phrase_pattern(trigger).search(text):
        return "elsewhere"
    return "absent"


def _cast(report: DoctorReport, images: list[ImageFacts], chars: list[Character], groups: dict) -> None:
    """Counts per character and pair, thin ones, the captions' triggers and invariant tags (lorawb.core.cast)."""
    cast = Cast.of((held(f.rel, f.folder, f.caption_text, chars) for f in images), chars, groups)
    if cast is None:
        return
    report.characters = [
        CastRow(
            r.label,
            r.count,
            {g: {v: r.values.get(g, {}).get(v, 0) for v in vs} for g, vs in groups.items()},
            len(r.cells),
        )
        for r in cast.rows
    ]
    report.cells_total = cast.cells_total
    report.character_warnings = cast.warnings
    report.caption_checks = [(f.image, f.note) for f in cast.findings]
    report.no_character = list(cast.none)


def _captions(report: DoctorReport, images: list[ImageFacts], trigger: str, triggers: list[str] = ()) -> None:
    tags: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    for f in images:
        if f.caption_rel is None:
            report.captions_missing.append(f.rel)
            continue
        if f.caption_text is None:
            continue  # there, but not read (too large, unreadable): listed in its own section or the notes
        if f.caption_encoding == "utf-8-sig":
            report.bom_captions.append(f.caption_rel)
        text = f.caption_text
        if not text.strip():
            report.captions_empty.append(f.rel)
            continue
        report.captions_counted += 1
        for t in split_tags(text):
            k = tag_key(t)
            tags[k] += 1
            spellings[k][tag_name(t)] += 1
        where = trigger_position(text, trigger)
        if where == "first":
            report.trigger_first += 1
        elif where == "elsewhere":
            report.trigger_not_first.append(f.rel)
        else:
            report.without_trigger.append(f.rel)
    report.trigger_anywhere = report.trigger_first + len(report.trigger_not_first)
    for t in {trigger, *triggers} - {""}:
        tags.pop(tag_key(t), None)  # a trigger would top every table; coverage says it already
    report.tags_distinct = len(tags)
    report.tags_total = sum(tags.values())
    named = [(spellings[k].most_common(1)[0][0], n) for k, n in tags.items()]
    report.top_tags = sorted(named, key=lambda kv: (-kv[1], kv[0]))[:15]


def _duplicates(images: list[ImageFacts]) -> list[list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for f in images:
        groups[f.content_hash].append(f.rel)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def _training_warnings(warnings: list[str], images: list[ImageFacts], settings: BucketSettings) -> list[str]:
    """What would make a run slow or its buckets useless, as the trainer warns of it."""
    out = list(warnings)
    placed = [(f, settings.bucket(f.width, f.height)) for f in images] if settings.enabled else []
    one = one_bucket_warning([(f.width, f.height) for f, b in placed if b], [b for _, b in placed if b])
    if one:
        out.append(one)
    return out


def _error_line(exc: Any) -> str:
    """``/p/lorawb.toml:47: train.batch_size: …; hint`` as the CLI says it, on one line."""
    text = exc.render()
    return text.replace("\n  hint: ", "; ")


def _buckets(images: list[ImageFacts], settings: BucketSettings) -> list[tuple[str, int]]:
    counts: Counter[tuple[int, int]] = Counter()
    for f in images:
        b = settings.bucket(f.width, f.height)
        if b is not None:
            counts[b] += 1
    return [(bucket_label(b), counts[b]) for b in sorted(counts, key=lambda b: (b[0] / b[1], b[0]))]


# --- plain text -------------------------------------------------------------------


def render_text(report: DoctorReport, *, limit: int | None = 10) -> str:
    """The report as plain text; each list shows at most ``limit`` names (None: all).

    A name holding a control character (a newline in a file name) is printed quoted with escapes
    (``dataset.quoted_name``): every finding stays on its own line.
    """
    out: list[str] = []
    add = out.append
    q = quoted_name

    def names(items: list[str]) -> None:
        shown = items if limit is None else items[:limit]
        for item in shown:
            add(f"    {item}")
        if len(items) > len(shown):
            add(f"    ... and {len(items) - len(shown)} more (--all or --json lists them)")

    add(f"lorawb doctor: {report.project}")
    add(f"dataset: {report.dataset_dir}")
    add("")
    if report.config_errors:
        add(f"lorawb.toml: training settings that a run refuses ({len(report.config_errors)}):")
        for line in report.config_errors:
            add(f"    {line}")
        add("")
    bad = report.image_files - report.images
    files = f"{report.image_files} ({bad} unreadable, not trained)" if bad else str(report.images)
    add(
        f"images: {files} in {plural(len(report.folders), 'folder')}, "
        f"{report.steps_per_epoch} image steps per epoch (images x repeats)"
    )
    width = max([len(q(f.folder) or "(top)") for f in report.folders] + [6])
    for f in report.folders:
        add(f"    {q(f.folder) or '(top)':<{width}}  {f.repeats:>4} repeats  {f.images:>6} images  {f.steps:>7} steps")

    add("")
    if report.trigger:
        n = report.captions_counted
        add(
            f'trigger "{report.trigger}": first in {report.trigger_first}/{n} captions, '
            f"present in {report.trigger_anywhere}/{n}"
        )
        if report.trigger_not_first:
            add(f"  trigger present but not first ({len(report.trigger_not_first)}):")
            names([q(r) for r in report.trigger_not_first])
        if report.without_trigger:
            add(f"  captions without the trigger ({len(report.without_trigger)}):")
            names([q(r) for r in report.without_trigger])
    elif report.characters:
        _render_cast(add, names, report)
    else:
        add("trigger: not set (set project.trigger in lorawb.toml)")

    sections: list[tuple[str, list[str]]] = [
        ("unreadable images", [f"{q(rel)}: {reason}" for rel, reason in report.unreadable]),
        (
            "symbolic links not followed (scans stay inside the project; see docs/dataset.md)",
            [f"{q(rel)}: {why}" for rel, why in report.links_not_followed],
        ),
        (
            f"captions over {size_text(CAPTION_MAX_BYTES)}, never read (a run refuses them)",
            [f"{q(rel)} ({size_text(n)})" for rel, n in report.captions_too_large],
        ),
        ("images without a caption", [q(r) for r in report.captions_missing]),
        ("empty captions", [q(r) for r in report.captions_empty]),
        ("orphan captions, with no image of the same name", [q(r) for r in report.orphan_captions]),
        (
            "captions not in UTF-8 (kohya reads UTF-8), kept as they are when edited; `lorawb captions utf8` converts them",
            [f"{q(rel)} ({enc})" for rel, enc in report.non_utf8_captions],
        ),
        ("captions starting with a byte-order mark", [q(r) for r in report.bom_captions]),
        (
            "low resolution (the short side)",
            [
                f"{q(rel)} ({w}x{h}: {low_res_note(min(w, h), report.min_resolution, report.resolution)})"
                for rel, w, h in report.low_resolution
            ],
        ),
        ("exact duplicates (same bytes)", [" = ".join(q(r) for r in g) for g in report.duplicates]),
        ("other notes", [f"{q(rel)}: {note}" for rel, note in report.notes]),
    ]
    for title, items in sections:
        if items:
            add("")
            add(f"{title} ({len(items)}):")
            names(items)

    add("")
    add(f"aspect-ratio buckets at {report.resolution}:")
    top = max([n for _, n in report.buckets] + [1])
    label_w = max([len(label) for label, _ in report.buckets] + [1])
    for label, n in report.buckets:
        bar = "#" * max(1, round(30 * n / top))
        add(f"    {label:<{label_w}}  {n:>6}  {bar}")
    if not report.buckets:
        add("    (no images)")
    for warning in report.training_warnings:
        add(f"  ⚠ {warning}")

    add("")
    add(f"tags: {report.tags_distinct} distinct, {report.tags_total} in all (trigger not counted)")
    if report.top_tags:
        add("    most used: " + ", ".join(f"{tag} ({n})" for tag, n in report.top_tags[:10]))

    if report.reg is not None:
        _render_reg(add, names, report.reg, report.steps_per_epoch)

    add("")
    n = report.problem_count
    add("no problems found" if n == 0 else f"{plural(n, 'problem')} found")
    return "\n".join(out) + "\n"


def _render_cast(add: Callable[[str], None], names: Callable[[list[str]], None], report: DoctorReport) -> None:
    """Per character (alone) and per pair (together): images, values per tag group, cells; then the warnings."""
    cells = f", context x style cells of {report.cells_total}" if report.cells_total else ""
    add(f"characters (images alone; pairs: images together; the values of each tag group they have{cells}):")
    width = max(len(r.label) for r in report.characters)
    for r in report.characters:
        groups = "  ".join(f"{g} {sum(1 for n in v.values() if n)}/{len(v)}" for g, v in r.values.items())
        covered = f"  cells {r.cells}/{report.cells_total}" if report.cells_total else ""
        add(f"    {r.label:<{width}}  {r.images:>6} images  {groups}{covered}".rstrip())
    if report.character_warnings:
        add(f"  thin (a character under {THIN_CHARACTER} images, a pair under {THIN_PAIR}, or all in one value):")
        names(report.character_warnings)
    if report.no_character:
        add(f"  images no folder or trigger gives a character ({len(report.no_character)}):")
        names([quoted_name(r) for r in report.no_character])
    if report.caption_checks:
        add(f"  captions: triggers and invariant tags ({len(report.caption_checks)}):")
        names([f"{quoted_name(rel)}: {note}" for rel, note in report.caption_checks])


def _render_reg(
    add: Callable[[str], None], names: Callable[[list[str]], None], reg: RegReport, train_steps: int
) -> None:
    add("")
    add(f"reg images: {reg.path} ({reg.images} images, prior_loss_weight {reg.prior_loss_weight:g})")
    width = max([len(f.folder or "(top)") for f in reg.folders] + [6])
    for f in reg.folders:
        own = f"{f.captioned} captioned" + (f', the rest "{f.class_tokens}"' if f.captioned < f.images else "")
        add(f"    {f.folder or '(top)':<{width}}  {f.repeats:>4} repeats  {f.images:>6} images  {own}")
    if reg.steps:
        used = min(reg.steps, train_steps)
        if reg.steps > train_steps:
            how = f"each epoch uses {used} of them ({reg.steps - used} unused: matched to the training images)"
        elif reg.steps < train_steps:
            how = f"repeated to {train_steps} per epoch to match the training images"
        else:
            how = "as many as the training images"
        add(f"  {reg.steps} reg image steps (with repeats) against {train_steps} training: {how}")
    if reg.unusable:
        add(f"  reg images without a caption or a class folder (name it N_class) ({len(reg.unusable)}):")
        names(reg.unusable)
    if reg.unreadable:
        add(f"  unreadable reg images ({len(reg.unreadable)}):")
        names([f"{rel}: {why}" for rel, why in reg.unreadable])
