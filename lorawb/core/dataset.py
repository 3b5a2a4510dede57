"""What is in an image folder: the facts of each image and its caption, found by a scan.

``read_image_facts`` is lorawb's one safe image reader: it opens one image (Pillow,
only the allowed formats, never a PostScript file named .png) and says what it is:
its size after EXIF orientation, mode, format, a content hash, its caption, and
anything wrong with it. A file that cannot be used (corrupt, truncated, empty, too
large, another format) gets an ``error`` instead of an exception: nothing here
raises for a bad file. ``load_image`` is the same gate for code that needs the pixels
(the trainer, the tagger).

``scan_dataset`` walks a folder (via ``lorawb.core.layout``) and sorts every image
into ``images`` (usable) or ``unreadable`` (named, with the reason), and reports
orphan captions and captions that were not UTF-8. ``lorawb.core.index`` keeps the
results of every project folder and makes scans incremental by handing in the
facts it already knows.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from lorawb.core import layout
from lorawb.core.fsutil import read_text
from lorawb.errors import ImageError, LorawbError, ProjectError

# EXIF orientations 5-8 rotate by 90 degrees: width and height swap.
_SWAPS_SIDES = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112
_FORMAT_EXTS = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg"),
    "WEBP": (".webp",),
    "BMP": (".bmp",),
    "GIF": (".gif",),
    "MPO": (".jpg", ".jpeg"),  # multi-picture JPEG from cameras
}
# The formats any lorawb code may hand to Image.open: a file named .png that is really
# PostScript must never reach Ghostscript. JPEG also opens MPO files.
SAFE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
NOT_AN_IMAGE = "not a PNG, JPEG, WebP, BMP or GIF image (corrupt, or another format)"


@dataclass
class ImageFacts:
    """One image and its caption as found on disk. Paths are posix, relative to dataset/."""

    rel: str  # relative to the scanned folder (an area of the project: dataset/, inbox/)
    folder: str  # the image's folder below the scanned one, rejected/ left out; "" at the top
    repeats: int  # kohya's N from the nearest `N_name` folder, else 1
    width: int = 0  # after EXIF orientation; 0 when unreadable
    height: int = 0
    mode: str = ""  # Pillow mode: RGB, RGBA, L, LA, P, CMYK, I;16 ...
    format: str = ""  # Pillow format: PNG, JPEG, WEBP, BMP, GIF
    size_bytes: int = 0
    mtime_ns: int = 0
    content_hash: str = ""  # sha256 of the file bytes, hex
    caption_rel: str | None = None  # the .txt (or .caption) file, when one exists
    caption_text: str | None = None  # newlines normalised to \n, otherwise as stored
    caption_encoding: str | None = None  # utf-8, utf-8-sig, utf-16, cp1252, latin-1
    caption_newline: str | None = None
    caption_mtime_ns: int = 0
    caption_size: int = 0
    error: str | None = None  # why the image cannot be used; None when it can
    problems: list[str] = field(default_factory=list)  # short notes, the error included
    rejected: bool = False  # under the scanned folder's top-level rejected/
    area: str = ""  # set by the index: which project folder ("dataset", "inbox")
    key: str = ""  # set by the index: the path relative to the project folder, posix

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)

    @property
    def has_caption(self) -> bool:
        return self.caption_rel is not None

    @property
    def caption_lossy(self) -> bool:
        """The caption is not UTF-8 (edits keep its encoding; the `utf8` caption operation converts it)."""
        return self.caption_encoding is not None and self.caption_encoding not in ("utf-8", "utf-8-sig")


@dataclass
class ScanResult:
    """Everything a scan of dataset/ found. Every image file is in ``images`` or ``unreadable``."""

    root: Path
    images: list[ImageFacts] = field(default_factory=list)  # usable images, in walk order
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (rel, reason): files and folders
    broken: list[ImageFacts] = field(default_factory=list)  # the facts of the unreadable image files
    orphan_captions: list[str] = field(default_factory=list)  # caption files with no image
    non_utf8: list[tuple[str, str]] = field(default_factory=list)  # (caption rel, encoding it was read as)
    opened: int = 0  # images whose bytes were read by this scan (0 on an unchanged rescan)
    elapsed_s: float = 0.0

    def by_rel(self) -> dict[str, ImageFacts]:
        return {f.rel: f for f in self.images}

    def add(self, facts: ImageFacts) -> None:
        """File one image's facts: usable, or unreadable with its reason; note a non-UTF-8 caption."""
        if facts.ok:
            self.images.append(facts)
        else:
            self.broken.append(facts)
            self.unreadable.append((facts.rel, facts.error or "unreadable"))
        if facts.caption_rel and facts.caption_lossy:
            self.non_utf8.append((facts.caption_rel, facts.caption_encoding or "?"))


# --- one image -----------------------------------------------------------------


def read_image_facts(path: Path, root: Path | None = None) -> ImageFacts:
    """The facts of the image at ``path`` (and of its caption); ``root`` is the dataset folder.

    Never raises for a bad file: an unusable image comes back with ``error`` set.
    """
    path = Path(path)
    facts = placed(path, root)
    _fill_image(facts, path)
    return with_caption(facts, path, root)


def placed(path: Path, root: Path | None) -> ImageFacts:
    """Facts with only the place of ``path`` filled in (rel, folder, repeats, rejected)."""
    rel = path.name if root is None else _display_rel(path, root)
    return ImageFacts(rel=rel, **place(rel))


def place(rel: str) -> dict:
    """folder, repeats and rejected of an image at ``rel`` (posix, relative to its area)."""
    parts = rel.split("/")[:-1]
    rejected = bool(parts) and parts[0] == layout.REJECTED
    folder = "/".join(parts[1:] if rejected else parts)
    return {"folder": folder, "repeats": layout.repeats_for(folder), "rejected": rejected}


def _fill_image(facts: ImageFacts, path: Path) -> None:
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        _fail(facts, f"cannot read file: {exc.strerror or exc}")
        return
    facts.size_bytes = len(data)
    facts.mtime_ns = st.st_mtime_ns
    facts.content_hash = hashlib.sha256(data).hexdigest()
    if not data:
        _fail(facts, "empty file (0 bytes)")
        return
    try:
        _decode(facts, data)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt data; all mean "unusable"
        _fail(facts, _failure_reason(exc))
    else:
        exts = _FORMAT_EXTS.get(facts.format)
        if exts and path.suffix.lower() not in exts:
            facts.problems.append(f"file is {facts.format} but named {path.suffix}")


def _decode(facts: ImageFacts, data: bytes) -> None:
    # Only the formats a dataset may hold: a file named .png that is really EPS must not reach Ghostscript.
    with Image.open(io.BytesIO(data), formats=SAFE_FORMATS) as im:
        width, height = im.size
        facts.mode = im.mode
        facts.format = im.format or ""
        limit = Image.MAX_IMAGE_PIXELS
        # Pillow only refuses at twice its limit (and warns in between); we refuse at the limit.
        if limit and width * height > limit:
            facts.width, facts.height = width, height
            _fail(facts, _bomb_reason(f"{width * height} pixels", width, height))
            return
        if im.format == "JPEG":
            # Decoding at 1/8 scale still reads every byte, so truncation is caught, at a fraction of the cost.
            im.draft(None, (max(1, width // 8), max(1, height // 8)))
        im.load()  # the only honest check that the pixels decode (gif/webp: the first frame)
        orientation = _orientation(im)
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    facts.width, facts.height = width, height


def _failure_reason(exc: BaseException) -> str:
    """Why Pillow could not decode an image, in the words the doctor, Triage and the tagger show."""
    if isinstance(exc, Image.DecompressionBombError):
        return _bomb_reason(str(exc))
    if isinstance(exc, UnidentifiedImageError):
        return NOT_AN_IMAGE
    if isinstance(exc, MemoryError):
        return "too large to decode in memory"
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return f"truncated: {text}"
    return f"corrupt: {text}"


def load_image(path: Path | str, *, min_side: int | None = None) -> Image.Image:
    """Decode one image for use (its pixels, EXIF orientation applied; the first frame of an animation).

    The same safe reader as the scan: only the dataset formats, decompression bombs refused
    at Pillow's limit. ``min_side`` lets a JPEG decode at a reduced scale that still keeps both
    sides at least that long (far faster for big photos that are shrunk anyway). Raises
    ImageError naming the file and the reason the scan would give.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    if not data:
        raise ImageError("empty file (0 bytes)", path=path)
    try:
        with Image.open(io.BytesIO(data), formats=SAFE_FORMATS) as im:
            width, height = im.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit and width * height > limit:
                raise ImageError(_bomb_reason(f"{width * height} pixels", width, height), path=path)
            if min_side and im.format == "JPEG":
                im.draft("RGB", (min_side, min_side))
            im.load()
            out = ImageOps.exif_transpose(im)
            return out if out is not im else im.copy()
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt data; all mean "unusable"
        raise ImageError(_failure_reason(exc), path=path) from exc


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - broken EXIF must not make a good image unusable
        return 1


def _bomb_reason(detail: str, width: int = 0, height: int = 0) -> str:
    size = f"{width}x{height} = " if width else ""
    m = re.search(r"\((\d+) pixels\)", detail) or re.match(r"(\d+) pixels", detail)
    pixels = m.group(1) if m else "too many"
    return (
        f"refused as a possible decompression bomb: {size}{pixels} pixels, over the limit of "
        f"{Image.MAX_IMAGE_PIXELS} (PIL.Image.MAX_IMAGE_PIXELS)"
    )


def _fail(facts: ImageFacts, reason: str) -> None:
    facts.error = reason
    facts.problems.insert(0, reason)


# --- captions --------------------------------------------------------------------

_CAPTION_NOTE = "caption"  # every caption problem starts with it, so a re-read can drop the old ones
_BOTH_NOTE = "both .txt and .caption exist"


def with_caption(facts: ImageFacts, image: Path, root: Path | None) -> ImageFacts:
    """``facts`` with its caption fields read afresh from disk (the image is not opened)."""
    out = replace(
        facts,
        caption_rel=None,
        caption_text=None,
        caption_encoding=None,
        caption_newline=None,
        caption_mtime_ns=0,
        caption_size=0,
        problems=[p for p in facts.problems if not p.startswith(_CAPTION_NOTE)],
    )
    cap = layout.caption_path_for(image)
    try:
        cap_st = cap.stat()
    except OSError:
        return out
    out.caption_rel = cap.name if root is None else _display_rel(cap, root)
    out.caption_mtime_ns, out.caption_size = cap_st.st_mtime_ns, cap_st.st_size
    try:
        tf = read_text(cap, limit=layout.CAPTION_MAX_BYTES)
    except LorawbError as exc:
        out.problems.append(f"{_CAPTION_NOTE} unreadable: {exc.message}")
        return out
    out.caption_text, out.caption_encoding, out.caption_newline = tf.text, tf.encoding, tf.newline
    if tf.lossy:
        out.problems.append(
            f"{_CAPTION_NOTE} is {tf.encoding}, not UTF-8 (kept when edited; `lorawb captions utf8` converts)"
        )
    elif tf.encoding == "utf-8-sig":
        out.problems.append(f"{_CAPTION_NOTE} starts with a byte-order mark (kohya reads it into the first tag)")
    if cap.suffix == ".txt" and image.with_suffix(".caption").exists():
        out.problems.append(f"{_CAPTION_NOTE}: {_BOTH_NOTE}; the .txt is used")
    return out


def caption_stat_matches(facts: ImageFacts, image: Path) -> bool:
    """True when the caption on disk is still the one ``facts`` describes (same file, size, mtime)."""
    # The same choice as layout.caption_path_for (.txt, else .caption), in as few stat calls as possible:
    # this runs for every image on every rescan.
    base = os.path.splitext(str(image))[0]
    found = None
    for ext in layout.CAPTION_EXTS:
        try:
            st = os.stat(base + ext)
        except OSError:
            continue
        found = ext
        break
    if found is None:
        return facts.caption_rel is None
    if facts.caption_rel != os.path.splitext(facts.rel)[0] + found:
        return False
    if (st.st_mtime_ns, st.st_size) != (facts.caption_mtime_ns, facts.caption_size):
        return False
    # The "both exist" note depends on the .caption beside the .txt: one more stat.
    shadowed = found == ".txt" and os.path.exists(base + ".caption")
    return shadowed == any(_BOTH_NOTE in p for p in facts.problems)


# --- the whole folder -------------------------------------------------------------

Reuse = Callable[[str, int, int], "ImageFacts | None"]
Progress = Callable[[int, int], None]


def scan_dataset(
    dataset_dir: Path,
    *,
    reuse: Reuse | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    include_rejected: bool = False,
) -> ScanResult:
    """Scan a folder: every image is indexed or reported; orphan and non-UTF-8 captions are listed.

    ``reuse(rel, size_bytes, mtime_ns)`` may return facts already known for an unchanged
    file: such an image is not opened (its caption is re-stat'ed and re-read if it changed).
    ``progress(done, total)`` is called as images are processed. ``include_rejected``
    walks the top-level ``rejected/`` too (its images come with ``rejected`` set).
    """
    started = time.perf_counter()
    root = Path(dataset_dir)
    if root.exists() and not root.is_dir():
        raise ProjectError("the dataset folder is a file, not a folder", path=root)
    if not root.is_dir():
        raise ProjectError(
            "the dataset folder does not exist",
            path=root,
            hint="create it and put images in it, or set project.dataset_dir in lorawb.toml",
        )
    result = ScanResult(root=root)
    walk_errors: list[tuple[Path, str]] = []
    caption_files: list[Path] = []
    paths = list(
        layout.walk_images(root, skip_rejected=not include_rejected, errors=walk_errors, captions=caption_files)
    )
    slots: list[ImageFacts | None] = [None] * len(paths)
    for p, reason in walk_errors:
        if layout.is_image(p) and not reason.startswith(layout.FOLDER_ERROR):
            # An image name the walk could not follow (a broken link, a link loop): an unreadable image.
            paths.append(p)
            slots.append(_unreadable_facts(p, root, reason))
        else:
            result.unreadable.append((printable_name(_display_rel(p, root)), reason))

    to_read: list[int] = []
    for i, p in enumerate(paths):
        if slots[i] is not None:
            continue
        rel = _display_rel(p, root)
        if not encodable(rel):
            slots[i] = bad_name_facts(rel)
            continue
        known = None
        if reuse is not None:
            try:
                st = p.stat()
            except OSError as exc:
                slots[i] = _unreadable_facts(p, root, f"cannot read file: {exc.strerror or exc}")
                continue
            known = reuse(rel, st.st_size, st.st_mtime_ns)
        if known is None:
            to_read.append(i)
        else:
            slots[i] = known if caption_stat_matches(known, p) else with_caption(known, p, root)

    total, done = len(paths), len(paths) - len(to_read)
    if progress:
        progress(done, total)
    for i, facts in _read_many([paths[i] for i in to_read], root, to_read, workers):
        slots[i] = facts
        done += 1
        if progress:
            progress(done, total)
    result.opened = len(to_read)

    order = sorted(range(len(paths)), key=lambda i: walk_order(slots[i].rel))  # type: ignore[union-attr]
    for i in order:
        facts = slots[i]
        assert facts is not None
        result.add(facts)
    result.orphan_captions = orphan_captions(root, caption_files, paths)
    result.unreadable.sort(key=lambda item: walk_order(item[0]))
    result.elapsed_s = time.perf_counter() - started
    return result


def orphan_captions(root: Path, captions: Iterable[Path], images: Iterable[Path]) -> list[str]:
    """The captions (rel to ``root``, walk order) with no image of the same stem in their folder."""
    stems = {os.path.splitext(os.fspath(p))[0] for p in images}
    out = [printable_name(_display_rel(c, root)) for c in captions if os.path.splitext(os.fspath(c))[0] not in stems]
    out.sort(key=walk_order)
    return out


def walk_order(rel: str) -> list[tuple[int, str]]:
    """Sort key giving the order ``layout.walk_images`` yields: per folder, files by name, then subfolders."""
    parts = rel.split("/")
    return [(1, p) for p in parts[:-1]] + [(0, parts[-1])]


def _read_many(
    paths: list[Path], root: Path, slots: list[int], workers: int | None
) -> Iterable[tuple[int, ImageFacts]]:
    return zip(slots, read_many(paths, [root] * len(paths), workers), strict=True)


def read_many(paths: list[Path], roots: list[Path], workers: int | None = None) -> Iterable[ImageFacts]:
    """``read_image_facts`` of each path (with its root), in order; in threads when there are many
    (Pillow and hashlib release the GIL)."""
    n = workers if workers is not None else default_workers()
    if n <= 1 or len(paths) < 16:
        return (read_image_facts(p, r) for p, r in zip(paths, roots, strict=True))
    return _pooled(paths, roots, n)


def _pooled(paths: list[Path], roots: list[Path], n: int) -> Iterable[ImageFacts]:
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="lorawb-scan") as pool:
        yield from pool.map(read_image_facts, paths, roots)


def default_workers() -> int:
    env = os.environ.get("LORAWB_THREADS")
    if env and env.isdigit():
        return max(1, int(env))
    return max(1, min(8, os.cpu_count() or 1))


def _display_rel(p: Path, root: Path) -> str:
    # Paths from the walk are built from ``root``, so a prefix cut is enough (and much cheaper than relative_to).
    full, base = str(p), str(root)
    if full.startswith(base) and full[len(base) : len(base) + 1] == os.sep:
        return full[len(base) + 1 :].replace(os.sep, "/")
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()


def encodable(rel: str) -> bool:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_name(rel: str) -> str:
    """A file name that may hold undecodable bytes (surrogate escapes), made safe to print and store."""
    return os.fsencode(rel).decode("utf-8", errors="backslashreplace")


def quoted_name(rel: str) -> str:
    """A name as a report prints it: as it is, or quoted with escapes (``"a\\nb.png"``) when it holds
    control characters, so a newline in a file name cannot split a line of output in two."""
    shown = printable_name(rel)
    if any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029" for ch in shown):
        return json.dumps(shown, ensure_ascii=False)
    return shown


def oversized_captions(images: Iterable[ImageFacts]) -> list[tuple[str, int]]:
    """(caption rel, bytes) of each caption over ``layout.CAPTION_MAX_BYTES``: never read, so never trained."""
    return [
        (f.caption_rel, f.caption_size) for f in images if f.caption_rel and f.caption_size > layout.CAPTION_MAX_BYTES
    ]


def refuse_oversized_captions(scan: ScanResult) -> None:
    """The trainer's check: a caption over the limit stops the run with the file named (its text was
    never read, so training on it would use an empty caption). Raises CaptionError."""
    from lorawb.errors import CaptionError
    from lorawb.words import size_text

    big = oversized_captions(scan.images)
    if big:
        rel, size = big[0]
        more = f" (and {len(big) - 1} more: `lorawb doctor` lists them)" if len(big) > 1 else ""
        raise CaptionError(
            f"the caption is {size_text(size)}, over the {size_text(layout.CAPTION_MAX_BYTES)} a caption may hold{more}",
            path=scan.root / rel,
            hint="shorten it (a caption is a line of tags or a few sentences), or move it out of the dataset",
        )


def bad_name_facts(rel: str) -> ImageFacts:
    shown = printable_name(rel)
    facts = ImageFacts(rel=shown, **place(shown))
    _fail(facts, BAD_NAME)
    return facts


BAD_NAME = "the file name is not valid UTF-8; rename the file"


def _unreadable_facts(p: Path, root: Path | None, reason: str) -> ImageFacts:
    facts = placed(p, root)
    if not encodable(facts.rel):
        facts.rel = printable_name(facts.rel)
    _fail(facts, reason)
    return facts


def unreadable_facts(path: Path, root: Path | None) -> ImageFacts | None:
    """Facts of an image name that cannot even be stat'ed (a broken link, a link loop); None if it is gone."""
    try:
        os.stat(path)
        return None
    except FileNotFoundError:
        if not os.path.islink(path):
            return None
        return _unreadable_facts(path, root, "broken symbolic link")
    except OSError as exc:
        return _unreadable_facts(path, root, f"cannot read file: {exc.strerror or exc}")
