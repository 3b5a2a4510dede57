"""Caption files of a project, selections of them, and the bulk operations that rewrite them.

Every operation is pure: it turns the captions as read into a ChangeSet (file, old
text, new text, and the file's mtime/size as read), which can be shown as a unified
diff and is then applied (and undone) by lorawb.core.caption_history. Nothing here
writes a file.

Selections: a subfolder, a list of files, and tag filters, written as a small query
(``has:forest -has:watercolor in:10_zkx_mira``); see ``parse_where``.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from lorawb.core import cast, layout
from lorawb.core.captions import (
    Caption,
    normalize,
    phrase_pattern,
    rename_tag,
    tag_key,
    tags_of,
    trigger_position,
)
from lorawb.core.characters import Character, lead_triggers
from lorawb.core.dataset import ImageFacts
from lorawb.core.fsutil import can_encode, read_text
from lorawb.core.index import DATASET, IndexSnapshot, ProjectIndex
from lorawb.core.project import Project
from lorawb.errors import CaptionError, LorawbError
from lorawb.words import plural

# ---------------------------------------------------------------------------
# Caption files as read


@dataclass
class CaptionFile:
    """One image's caption as read from disk (``text`` is None when the image has no caption file)."""

    image: str  # the image, relative to the project root (posix), as the app names images
    file: str  # the caption file's path (which may not exist yet); a str: 10,000 Paths cost time
    text: str | None
    newline: str = "\n"
    mtime_ns: int | None = None
    size: int | None = None
    encoding: str = "utf-8"
    image_error: str | None = None  # why the image beside it is unreadable (from the index); None: fine

    @property
    def path(self) -> Path:
        return Path(self.file)

    @cached_property
    def caption(self) -> Caption:
        return Caption.parse(self.text or "")

    @cached_property
    def keys(self) -> frozenset[str]:
        """The tag keys of every line (a line end reads as a comma, as in the tag statistics)."""
        if "\n" in (self.text or "").strip():
            return frozenset(tag_key(t) for t in tags_of(self.text or ""))
        return frozenset(self.caption.keys)

    @property
    def exists(self) -> bool:
        return self.text is not None


def rel_to(root: Path, path: Path | str) -> str:
    r, p = str(root), str(path)
    if p.startswith(r) and p[len(r) : len(r) + 1] == os.sep:  # cheap, and right for paths under the root
        return p[len(r) + 1 :].replace(os.sep, "/")
    return Path(os.path.relpath(p, r)).as_posix()


def read_caption(root: Path, image: Path) -> CaptionFile:
    """Read one image's caption (any encoding; a missing file is an empty caption)."""
    cap = layout.caption_path_for(image)
    return _read(root, image, str(cap) if cap.exists() else None)


def _read(root: Path, image: Path, cap: str | None) -> CaptionFile:
    rel = rel_to(root, image)
    if cap is None:
        return CaptionFile(rel, os.path.splitext(image)[0] + ".txt", None)
    try:
        tf = read_text(cap, limit=layout.CAPTION_MAX_BYTES)  # type: ignore[arg-type]
    except LorawbError:
        if not os.path.exists(cap):  # deleted between the listing and the read
            return CaptionFile(rel, cap, None)
        raise
    return CaptionFile(rel, cap, tf.text, tf.newline, tf.mtime_ns, tf.size, tf.encoding)


def read_captions(root: Path, images: Iterable[str]) -> list[CaptionFile]:
    """The captions of these images (paths relative to ``root``), listing each folder once (fast for 10,000)."""
    listings: dict[str, set[str]] = {}
    out = []
    for rel in images:
        image = os.path.join(root, rel)
        out.append(_read(root, Path(image), _caption_beside(image, listings)))
    return out


def _images_with_captions(folder: Path) -> Iterable[tuple[Path, str | None]]:
    """(image, caption file or None) for every image under ``folder``, one directory listing each."""
    listings: dict[str, set[str]] = {}
    for image in layout.walk_images(folder):
        yield image, _caption_beside(str(image), listings)


def _caption_beside(image: str, listings: dict[str, set[str]]) -> str | None:
    """The caption file of ``image`` (.txt, else .caption), from a per-folder listing cached in ``listings``."""
    d, name = os.path.split(image)  # plain strings: pathlib costs more than the reads here
    names = listings.get(d)
    if names is None:
        try:
            names = set(os.listdir(d))
        except OSError:
            names = set()
        listings[d] = names
    stem = os.path.splitext(name)[0]
    return next((d + os.sep + stem + ext for ext in layout.CAPTION_EXTS if stem + ext in names), None)


def caption_file_of(root: Path, f: ImageFacts) -> CaptionFile:
    """One indexed image's caption, as the index read it (no disk access)."""
    image = os.path.join(root, f.key)
    prefix = f.key[: len(f.key) - len(f.rel)]
    if f.caption_rel is None:
        return CaptionFile(f.key, os.path.splitext(image)[0] + ".txt", None, image_error=f.error)
    return CaptionFile(
        f.key,
        os.path.join(root, prefix + f.caption_rel),
        f.caption_text,
        f.caption_newline or "\n",
        f.caption_mtime_ns,
        f.caption_size,
        f.caption_encoding or "utf-8",
        image_error=f.error,
    )


def captions_of(root: Path, snapshot: IndexSnapshot, images: Iterable[str] | None = None) -> list[CaptionFile]:
    """The captions of these images (keys), or of every dataset image not rejected, from an index snapshot."""
    if images is None:
        return [caption_file_of(root, f) for f in snapshot.images(DATASET)]
    facts = snapshot.facts
    return [caption_file_of(root, facts[k]) for k in images if k in facts]


def with_image_errors(files: list[CaptionFile], snapshot: IndexSnapshot) -> list[CaptionFile]:
    """``files`` (read from disk) with the index's verdict on each image beside them."""
    facts = snapshot.facts
    for cf in files:
        f = facts.get(cf.image)
        cf.image_error = f.error if f is not None else None
    return files


def load_captions(project: Project, selection: Selection | None = None) -> list[CaptionFile]:
    """The captions of the dataset (or of the selection's folders / files), in a stable order, filtered.

    They come from the project's index (refreshed first: unchanged files are only re-stat'ed), so
    every caption carries the index's verdict on its image, and the counts are the doctor's.
    """
    selection = selection or Selection()
    root = project.root
    index = ProjectIndex(project)
    try:
        snapshot = index.refresh()
    finally:
        index.close()
    files: list[CaptionFile] = []
    if selection.files is not None:
        for f in selection.files:
            image = resolve_image(project, f)
            files.append(read_caption(root, image))
        return selection.filter(with_image_errors(files, snapshot))
    if not selection.folders:
        return selection.filter(captions_of(root, snapshot))
    seen: set[str] = set()
    for folder in (resolve_folder(project, f) for f in selection.folders):
        hit = index.area_of(folder / "x")
        if hit is None:  # a folder outside the project's image folders: read it as it is
            for image, cap in _images_with_captions(folder):
                cf = _read(root, image, cap)
                if cf.image not in seen:
                    seen.add(cf.image)
                    files.append(cf)
            continue
        area, rel = hit
        prefix = area.key(rel[:-1])  # "dataset/10_mira/"
        for f in snapshot.images(area.name, rejected=None):
            if f.key.startswith(prefix) and f.key not in seen and (not f.rejected or "/rejected/" in "/" + prefix):
                seen.add(f.key)
                files.append(caption_file_of(root, f))
    return selection.filter(files)


def resolve_folder(project: Project, folder: str) -> Path:
    """A selection's folder: relative to the project root, else to dataset/."""
    for base in (project.root, project.dataset_dir):
        p = (base / folder).resolve() if not Path(folder).is_absolute() else Path(folder)
        if p.is_dir():
            return p
    raise CaptionError(
        f"no such folder: {folder}",
        path=project.dataset_dir,
        hint="give a subfolder of dataset/ (e.g. in:10_zkx_mira) or a path relative to the project",
    )


def resolve_image(project: Project, f: str | Path) -> Path:
    """An image named by its path (relative to the project root) or by its caption file's path."""
    p = Path(f)
    if not p.is_absolute():
        p = project.root / p
    if layout.is_image(p) and p.is_file():
        return p
    if p.suffix.lower() in layout.CAPTION_EXTS:
        for ext in sorted(layout.IMAGE_EXTS):
            for cand in (p.with_suffix(ext), p.with_suffix(ext.upper())):
                if cand.is_file():
                    return cand
    raise CaptionError(f"no such image: {f}", path=project.root, hint="name images relative to the project folder")


# ---------------------------------------------------------------------------
# Selections


@dataclass(frozen=True)
class Term:
    kind: str  # "has", "text", "char"
    value: str  # tag key for "has"; phrase for "text"; a character, a pair, joint or none for "char"
    negate: bool = False
    chars: tuple[Character, ...] = ()  # "char": the project's characters (lorawb.core.cast says who an image holds)

    def matches(self, cf: CaptionFile) -> bool:
        if self.kind == "char":
            hit = cast.matches(cast.held(cf.image, cast.folder_of(cf.image), cf.text, self.chars), self.value)
        elif self.kind == "has":
            hit = self.value in cf.keys
        else:
            hit = bool(phrase_pattern(self.value).search(cf.text or ""))
        return hit != self.negate


WHERE_HELP = (
    "filters: has:TAG  -has:TAG  text:WORDS  -text:WORDS  in:FOLDER  file:PATH  char:NAME  joint "
    "(quote tags with spaces)"
)


def parse_where(query: str | Iterable[str] | None, chars: Sequence[Character] = ()) -> Selection:
    """``has:forest -has:"pixel art" in:10_zkx_mira`` -> a Selection (terms are AND'ed; in:/file: OR'ed).

    With several characters (``chars``): ``char:mira`` (images holding mira), ``char:mira+tom`` (both),
    ``joint`` (two or more), ``char:none``; ``-`` negates them as it does tags."""
    if query is None:
        return Selection()
    parts: list[str] = []
    for q in [query] if isinstance(query, str) else query:
        try:
            parts.extend(shlex.split(q))
        except ValueError as exc:
            raise CaptionError(f"bad filter {q!r}: {exc}", hint=WHERE_HELP) from exc
    terms: list[Term] = []
    folders: list[str] = []
    files: list[str] = []
    for part in parts:
        negate = part.startswith("-")
        if part.lstrip("-").lower() == cast.JOINT:
            part = ("-" if negate else "") + "char:" + cast.JOINT
        kind, sep, value = part.lstrip("-").partition(":")
        value = normalize(value)
        if not sep or not value:
            raise CaptionError(f"bad filter {part!r}", hint=WHERE_HELP)
        if kind == "has":
            terms.append(Term("has", tag_key(value), negate))
        elif kind == "text":
            terms.append(Term("text", value, negate))
        elif kind in ("char", "character"):
            try:
                terms.append(Term("char", cast.check_filter_word(value, chars), negate, tuple(chars)))
            except ValueError as exc:
                raise CaptionError(f"bad filter {part!r}: {exc}", hint=WHERE_HELP) from None
        elif kind == "in" and not negate:
            folders.append(value)
        elif kind == "file" and not negate:
            files.append(value)
        else:
            raise CaptionError(f"unknown filter {part!r}", hint=WHERE_HELP)
    return Selection(folders=tuple(folders), terms=tuple(terms), files=tuple(files) if files else None)


@dataclass(frozen=True)
class Selection:
    """Which captions an operation touches: folders OR files, then every term must hold."""

    folders: tuple[str, ...] = ()
    terms: tuple[Term, ...] = ()
    files: tuple[str, ...] | None = None

    def filter(self, files: list[CaptionFile]) -> list[CaptionFile]:
        if not self.terms:
            return files
        return [cf for cf in files if all(t.matches(cf) for t in self.terms)]

    def select(self, project: Project, files: list[CaptionFile]) -> list[CaptionFile]:
        """This selection applied to captions already read (the app's list): folders, files, then terms."""
        if self.folders:
            prefixes = tuple(rel_to(project.root, resolve_folder(project, f)) + "/" for f in self.folders)
            files = [cf for cf in files if cf.image.startswith(prefixes)]
        if self.files is not None:
            wanted = {rel_to(project.root, resolve_image(project, f)) for f in self.files}
            files = [cf for cf in files if cf.image in wanted]
        return self.filter(files)

    def narrowed(self, other: Selection) -> Selection:
        """This selection further limited by ``other``'s terms (and its folders/files when it names some)."""
        return Selection(
            folders=other.folders or self.folders,
            terms=self.terms + other.terms,
            files=other.files if other.files is not None else self.files,
        )

    def describe(self) -> str:
        bits = [f"in:{f}" for f in self.folders]
        bits += [
            ("-" if t.negate else "") + (t.value if t.value == cast.JOINT else f"{t.kind}:{t.value}")
            for t in self.terms
        ]
        if self.files is not None:
            bits.append(plural(len(self.files), "file"))
        return " ".join(bits) or "all captions"


# ---------------------------------------------------------------------------
# Operations: each rewrites one caption's text; ``check`` refuses a no-op request clearly.


class Operation:
    label = "edit"
    encoding: str | None = None  # set: the files are written in this encoding (else each keeps its own)

    def check(self, files: list[CaptionFile]) -> None:
        """Raise CaptionError when the request makes no sense for these captions (e.g. an unknown tag)."""

    def rewrite_caption(self, cf: CaptionFile) -> str:
        """The new text of one caption. Operations that depend on the image, not only on its text
        (the auto-tagger's proposals), override this; the others rewrite the text."""
        return self.rewrite(cf.text or "")

    def rewrite(self, text: str) -> str:
        """A caption of several lines (kohya reads line one; with wildcards each line is a caption)
        is rewritten line by line, each line as its own caption: the line structure stays, and a
        line the operation does not change is left byte for byte as it was."""
        if "\n" in text.strip():
            lines = text.split("\n")
            new = [self.rewrite_line(line) if line.strip() else line for line in lines]
            return text if new == lines else "\n".join(new)
        return self.rewrite_line(text)

    def rewrite_line(self, text: str) -> str:
        cap = Caption.parse(text)
        tags = self.transform(list(cap.tags))
        if tuple(tags) == cap.tags:
            return text
        return cap.with_tags(tags).text()

    def transform(self, tags: list[str]) -> list[str]:
        return tags


def _keys(tags: list[str]) -> list[str]:
    return [tag_key(t) for t in tags]


def _need_tag(files: list[CaptionFile], tag: str) -> None:
    key = tag_key(tag)
    if any(key in cf.keys for cf in files):
        return
    vocab: dict[str, int] = {}
    for cf in files:
        for k in cf.keys:
            vocab[k] = vocab.get(k, 0) + 1
    close = difflib.get_close_matches(key, list(vocab), n=3, cutoff=0.6)
    hint = "did you mean: " + ", ".join(close) if close else "see `lorawb captions stats` for the tags in use"
    raise CaptionError(
        f"unknown tag {tag!r}: no caption in the selection ({plural(len(files), 'file')}) has it", hint=hint
    )


def _need_nonempty(tag: str, what: str = "tag") -> str:
    tag = normalize(tag)
    if not tag or "," in tag:
        raise CaptionError(f"bad {what} {tag!r}: give one non-empty tag without commas")
    return tag


def _need_trigger(trigger: str) -> str:
    if not trigger:
        raise CaptionError(
            "no trigger set for this project",
            hint="set [project] trigger in lorawb.toml, or `lorawb captions trigger NAME`",
        )
    return trigger


@dataclass
class AddTag(Operation):
    tag: str
    at: str = "end"  # "start" | "end" | "after-trigger"
    trigger: str = ""
    also: tuple[str, ...] = ()  # several characters: every trigger, which lead together

    def __post_init__(self) -> None:
        self.tag = _need_nonempty(self.tag)
        if self.at not in ("start", "end", "after-trigger"):
            raise CaptionError(f"bad position {self.at!r}: use start, end or after-trigger")
        if self.at == "after-trigger" and not self.also:
            _need_trigger(self.trigger)
        self.key = tag_key(self.tag)
        self.label = f"add {self.tag!r} at {self.at}"

    def transform(self, tags: list[str]) -> list[str]:
        if self.key in _keys(tags):
            return tags
        if self.trigger and not any(tags):
            # A new caption (the image had none) starts with the trigger, like every caption should.
            return [self.trigger, self.tag]
        if self.at == "start":
            return [self.tag, *tags]
        if self.at == "after-trigger":
            pos = _lead_len(tags, self.trigger, self.also)
            return [*tags[:pos], self.tag, *tags[pos:]]
        # at the end, before any trailing empty tags (``a, b,`` stays tidy)
        end = len(tags)
        while end and not tags[end - 1]:
            end -= 1
        return [*tags[:end], self.tag, *tags[end:]]


@dataclass
class RemoveTag(Operation):
    tag: str

    def __post_init__(self) -> None:
        self.tag = _need_nonempty(self.tag)
        self.key = tag_key(self.tag)
        self.label = f"remove {self.tag!r}"

    def check(self, files: list[CaptionFile]) -> None:
        _need_tag(files, self.tag)

    def transform(self, tags: list[str]) -> list[str]:
        return [t for t in tags if tag_key(t) != self.key]


@dataclass
class ReplaceTag(Operation):
    old: str
    new: str

    def __post_init__(self) -> None:
        self.old = _need_nonempty(self.old)
        self.new = _need_nonempty(self.new, "new tag")
        self.old_key, self.new_key = tag_key(self.old), tag_key(self.new)
        self.label = f"replace {self.old!r} with {self.new!r}"

    def check(self, files: list[CaptionFile]) -> None:
        _need_tag(files, self.old)

    def transform(self, tags: list[str]) -> list[str]:
        keys = _keys(tags)
        if self.old_key not in keys:
            return tags
        out: list[str] = []
        have_new = self.new_key in keys and self.new_key != self.old_key
        for t, k in zip(tags, keys, strict=True):
            if k == self.old_key:
                if have_new:
                    continue  # the caption already has the new tag: don't duplicate it
                out.append(rename_tag(t, self.new))
                have_new = True
            else:
                out.append(t)
        return out


@dataclass
class MoveTag(Operation):
    tag: str
    to: str = "front"  # "front" (after the trigger, which stays first) | "back"
    trigger: str = ""
    also: tuple[str, ...] = ()  # several characters: every trigger, which lead together

    def __post_init__(self) -> None:
        self.tag = _need_nonempty(self.tag)
        if self.to not in ("front", "back"):
            raise CaptionError(f"bad direction {self.to!r}: use front or back")
        self.key = tag_key(self.tag)
        self.label = f"move {self.tag!r} to the {self.to}"

    def check(self, files: list[CaptionFile]) -> None:
        _need_tag(files, self.tag)

    def transform(self, tags: list[str]) -> list[str]:
        keys = _keys(tags)
        moved = [t for t, k in zip(tags, keys, strict=True) if k == self.key]
        if not moved:
            return tags
        rest = [t for t, k in zip(tags, keys, strict=True) if k != self.key]
        if self.to == "back":
            return rest + moved
        if self.also:
            lead = 0 if self.key in {tag_key(t) for t in self.also} else _lead_len(rest, self.trigger, self.also)
        else:
            lead = 1 if self.trigger and self.key != tag_key(self.trigger) and _leads(rest, self.trigger) else 0
        return rest[:lead] + moved + rest[lead:]


def _leads(tags: list[str], trigger: str) -> bool:
    return trigger_position(tags, trigger) == 0


def _lead_len(tags: list[str], trigger: str, also: tuple[str, ...] = ()) -> int:
    """How many tags lead the caption as triggers: the trigger (1 or 0), or with several characters
    (``also``: every trigger) the run of triggers at its start."""
    if not also:
        return 1 if trigger and _leads(tags, trigger) else 0
    keys = {tag_key(t) for t in (trigger, *also) if t}
    n = 0
    while n < len(tags) and tag_key(tags[n]) in keys:
        n += 1
    return n


@dataclass
class RegexReplace(Operation):
    pattern: str
    replacement: str

    def __post_init__(self) -> None:
        try:
            self.regex = re.compile(self.pattern)
        except re.error as exc:
            raise CaptionError(
                f"bad regex {self.pattern!r}: {exc}", hint="Python `re` syntax; quote it for the shell"
            ) from exc
        try:  # the replacement template is compiled up front: a bad group reference fails here
            self.regex.sub(self.replacement, "")
        except (re.error, IndexError) as exc:
            raise CaptionError(
                f"bad replacement {self.replacement!r}: {exc}", hint="groups are \\1 or \\g<name>"
            ) from exc
        self.label = f"regex {self.pattern!r} -> {self.replacement!r}"

    def rewrite(self, text: str) -> str:
        # On the caption body only: the surrounding whitespace (trailing newline) is kept as it was.
        body = text.strip()
        if not body:
            return text
        lead = text[: len(text) - len(text.lstrip())]
        trail = text[len(lead) + len(body) :]
        new = self.regex.sub(self.replacement, body)
        return text if new == body else lead + new + trail


@dataclass
class SetTrigger(Operation):
    """The trigger first in every caption: inserted where missing, moved to the front where elsewhere.

    With several characters (``chars``) the triggers a caption holds lead it together, in the project's
    order (a joint caption: ``zkx_mira, qvr_tom, ...``), whichever of them this one is."""

    name: str
    chars: tuple[Character, ...] = ()

    def __post_init__(self) -> None:
        self.name = _need_nonempty(self.name, "trigger")
        self.label = f"set trigger {self.name!r}"

    def transform(self, tags: list[str]) -> list[str]:
        i = trigger_position(tags, self.name)
        if len(self.chars) > 1 and tag_key(self.name) in {c.key for c in self.chars}:
            return lead_triggers(tags if i is not None else [self.name, *tags], list(self.chars))
        if i == 0:
            return tags
        if i is None:
            return [self.name, *tags]
        return [tags[i], *tags[:i], *tags[i + 1 :]]


@dataclass
class LeadTriggers(Operation):
    """Several characters: every caption leads with the triggers of the characters its image holds (its
    folders, the triggers it names: lorawb.core.cast), in the project's order; a missing one is added."""

    chars: tuple[Character, ...]

    def __post_init__(self) -> None:
        if len(self.chars) < 2:
            raise CaptionError(
                "one character: `lorawb captions trigger NAME` puts its trigger first",
                hint="several characters are [characters.<name>] tables in lorawb.toml",
            )
        self.label = "lead with each image's triggers"
        self._want: list[str] = []

    def rewrite_caption(self, cf: CaptionFile) -> str:
        h = cast.held(cf.image, cast.folder_of(cf.image), cf.text, self.chars)
        self._want = [c.trigger for c in self.chars if c.name in h.names]
        return self.rewrite(cf.text or "") if self._want else (cf.text or "")

    def transform(self, tags: list[str]) -> list[str]:
        keys = {tag_key(t) for t in tags}
        missing = [t for t in self._want if tag_key(t) not in keys]
        return lead_triggers([*missing, *[t for t in tags if t or not missing]], list(self.chars))


@dataclass
class RenameTrigger(Operation):
    """Every whole-word occurrence of OLD becomes NEW (in tags and in sentences)."""

    old: str
    new: str

    def __post_init__(self) -> None:
        self.old = _need_nonempty(self.old, "trigger")
        self.new = _need_nonempty(self.new, "trigger")
        self.pattern = phrase_pattern(self.old)
        self.label = f"rename trigger {self.old!r} to {self.new!r}"

    def check(self, files: list[CaptionFile]) -> None:
        if not any(self.pattern.search(cf.text or "") for cf in files):
            raise CaptionError(
                f"unknown trigger {self.old!r}: no caption in the selection ({plural(len(files), 'file')}) contains it",
                hint="check the spelling; `lorawb captions stats` lists the tags in use",
            )

    def rewrite(self, text: str) -> str:
        new = self.pattern.sub(lambda _m: self.new, text)
        return new


@dataclass
class Dedupe(Operation):
    """Later repeats of a tag are dropped (the first, with its weight, stays); empty tags too."""

    def __post_init__(self) -> None:
        self.label = "dedupe"

    def transform(self, tags: list[str]) -> list[str]:
        seen: set[str] = set()
        out = []
        for t in tags:
            k = tag_key(t)
            if k and k not in seen:
                seen.add(k)
                out.append(t)
        return out


@dataclass
class SortTags(Operation):
    """Alphabetical by tag name; the trigger stays first; empty tags dropped."""

    trigger: str = ""
    also: tuple[str, ...] = ()  # several characters: every trigger, which lead together

    def __post_init__(self) -> None:
        self.label = "sort"

    def transform(self, tags: list[str]) -> list[str]:
        tags = [t for t in tags if t]
        if not tags:
            return tags
        n = _lead_len(tags, self.trigger, self.also)
        head, tags = tags[:n], tags[n:]
        return head + sorted(tags, key=lambda t: (tag_key(t), t))


@dataclass
class StripEmpty(Operation):
    """``a, , b,`` -> ``a, b``."""

    def __post_init__(self) -> None:
        self.label = "strip empty tags"

    def transform(self, tags: list[str]) -> list[str]:
        return [t for t in tags if tag_key(t)]


@dataclass
class ToUtf8(Operation):
    """Every selected caption stored as UTF-8 without a BOM (what kohya's trainer reads); the text unchanged.

    The one operation that changes how files are stored: every other edit keeps each file's
    encoding, BOM and line ends.
    """

    def __post_init__(self) -> None:
        self.label = "convert to UTF-8"
        self.encoding = "utf-8"

    def rewrite(self, text: str) -> str:
        return text


@dataclass
class SetText(Operation):
    """One caption's new text, as typed in the editor."""

    new_text: str
    label: str = field(default="edit caption")

    def rewrite(self, text: str) -> str:
        return self.new_text


def make_operation(
    key: str, a: str = "", b: str = "", position: str = "", trigger: str = "", chars: Sequence[Character] = ()
) -> Operation:
    """The operation a bulk edit names (the CLI's OP, the app's form): ``trigger`` is [project] trigger; with
    several characters (``chars``) every trigger leads together, in the project's order."""
    also = tuple(c.trigger for c in chars) if len(chars) > 1 else ()
    many = tuple(chars) if len(chars) > 1 else ()
    if key == "add":
        return AddTag(a, at=position or "end", trigger=trigger, also=also)
    if key == "remove":
        return RemoveTag(a)
    if key == "replace":
        return ReplaceTag(a, b)
    if key == "move":
        return MoveTag(a, to=position or "front", trigger=trigger, also=also)
    if key == "regex":
        return RegexReplace(a, b)
    if key == "trigger":
        return SetTrigger(a, chars=many)
    if key == "triggers":
        return LeadTriggers(tuple(chars))
    if key == "rename-trigger":
        return RenameTrigger(a, b)
    if key == "dedupe":
        return Dedupe()
    if key == "sort":
        return SortTags(trigger=trigger, also=also)
    if key == "utf8":
        return ToUtf8()
    if key == "strip":
        return StripEmpty()
    raise CaptionError(f"unknown operation {key!r}")


# ---------------------------------------------------------------------------
# Change sets


@dataclass(frozen=True)
class Change:
    image: str  # relative to the project root
    rel: str  # the caption file, relative to the project root
    path: Path
    old: str | None  # None: the caption file does not exist yet
    new: str | None  # None: delete the file (only undo of a creation does this)
    newline: str = "\n"
    mtime_ns: int | None = None  # of the file as read, for conflict detection
    size: int | None = None
    encoding: str = "utf-8"  # of the file as read
    write_encoding: str | None = None  # how the new text is stored; None: as the file was (``encoding``)


@dataclass
class ChangeSet:
    """What an operation would do: the files it changes, old and new text. Apply with caption_history."""

    label: str
    changes: list[Change]
    scanned: int  # images looked at (with or without a caption file, readable or not)
    selection: str = "all captions"
    caption_files: int | None = None  # of which have a caption file
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (image, reason): changes beside one

    def __len__(self) -> int:
        return len(self.changes)

    def __bool__(self) -> bool:
        return True

    @property
    def lossy(self) -> list[Change]:
        """Changes whose new text the file's 8-bit encoding (cp1252, latin-1) cannot hold: written as UTF-8.

        Every other change keeps the file's encoding, BOM and newline style (``fsutil.encode_text``).
        """
        return [c for c in self.changes if c.new is not None and not can_encode(c.new, c.write_encoding or c.encoding)]

    def diff(self, limit: int | None = None) -> str:
        """A unified diff of the changes (the first ``limit`` files), like `git diff`."""
        out: list[str] = []
        for ch in self.changes[:limit] if limit is not None else self.changes:
            out.append(change_diff(ch))
        return "".join(out)

    @property
    def created(self) -> int:
        """Changes that create a caption file (the image had none)."""
        return sum(1 for c in self.changes if c.old is None)

    def scope(self) -> str:
        """What was looked at, in the one count: ``22 images (21 have a caption file)``."""
        if self.caption_files is None or self.caption_files == self.scanned:
            return plural(self.scanned, "caption")
        return f"{plural(self.scanned, 'image')} ({self.caption_files} {_have(self.caption_files)} a caption file)"

    def counts(self, changed: int | None = None, verb: str = "change") -> str:
        """``changed 22 captions of 22 images (21 have a caption file, 1 created)`` and the unreadable images named.

        One count everywhere: the images are the index's (readable or not, rejects left out),
        caption files are counted apart, and a caption beside an unreadable image is named.
        """
        n = len(self.changes) if changed is None else changed
        created = self.created
        if self.caption_files is None or self.caption_files == self.scanned:
            text = f"{verb} {n} of {plural(self.scanned, 'caption')}"
            if created:
                text += f" ({created} created)"
        else:
            extra = f", {created} created" if created else ""
            text = f"{verb} {plural(n, 'caption')} of {plural(self.scanned, 'image')} ({self.caption_files} {_have(self.caption_files)} a caption file{extra})"
        return text + unreadable_note(self.unreadable)

    def summary(self) -> str:
        return f"{self.label}: {self.counts(verb='would change')} ({self.selection})"


def _have(n: int | None) -> str:
    return "has" if n == 1 else "have"


def unreadable_note(unreadable: list[tuple[str, str]], limit: int = 3) -> str:
    """`` · 1 beside an unreadable image: 10_mira/x.png (truncated…)`` (empty when there are none)."""
    if not unreadable:
        return ""
    shown = ", ".join(f"{image} ({reason})" for image, reason in unreadable[:limit])
    more = f" and {len(unreadable) - limit} more" if len(unreadable) > limit else ""
    which = "beside an unreadable image" if len(unreadable) == 1 else "beside unreadable images"
    return f" · {len(unreadable)} {which}: {shown}{more}"


def change_diff(ch: Change) -> str:
    a = f"a/{ch.rel}" if ch.old is not None else "/dev/null"
    b = f"b/{ch.rel}" if ch.new is not None else "/dev/null"
    old_lines = (ch.old or "").splitlines(keepends=True)
    new_lines = (ch.new or "").splitlines(keepends=True)
    if len(old_lines) <= 1 and len(new_lines) <= 1:
        # The common case (one-line captions), without difflib's overhead. The "no newline at end
        # of file" marker is left out when both sides lack the newline: it would double the preview.
        same_end = old_lines and new_lines and old_lines[0].endswith("\n") == new_lines[0].endswith("\n")
        eol = _plain_eol if same_end else _eol
        head = f"--- {a}\n+++ {b}\n@@ -{_hunk(len(old_lines))} +{_hunk(len(new_lines))} @@\n"
        return head + "".join(f"-{eol(x)}" for x in old_lines) + "".join(f"+{eol(x)}" for x in new_lines)
    lines = difflib.unified_diff(old_lines, new_lines, a, b)
    return "".join(_eol(x) if x.startswith(("-", "+", " ")) and not x.startswith(("---", "+++")) else x for x in lines)


def _hunk(n: int) -> str:
    return "0,0" if n == 0 else "1"


def _plain_eol(line: str) -> str:
    return line if line.endswith("\n") else line + "\n"


def _eol(line: str) -> str:
    return line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"


def build_changeset(
    project: Project,
    op: Operation,
    selection: Selection | None = None,
    files: list[CaptionFile] | None = None,
) -> ChangeSet:
    """Read the selected captions (or use ``files`` as already read) and compute what ``op`` changes."""
    selection = selection or Selection()
    files = load_captions(project, selection) if files is None else selection.filter(files)
    op.check(files)
    root = project.root
    changes: list[Change] = []
    unreadable: list[tuple[str, str]] = []
    for cf in files:
        old = cf.text
        new = op.rewrite_caption(cf)
        recode = op.encoding is not None and old is not None and cf.encoding != op.encoding
        if new == (old or "") and not recode:
            continue
        if old is None and not new.strip():
            continue
        if cf.image_error is not None:
            unreadable.append((cf.image, cf.image_error))
        changes.append(
            Change(
                image=cf.image,
                rel=rel_to(root, cf.file),
                path=cf.path,
                old=old,
                new=new,
                newline=cf.newline,
                mtime_ns=cf.mtime_ns,
                size=cf.size,
                encoding=cf.encoding,
                write_encoding=op.encoding,
            )
        )
    return ChangeSet(
        op.label,
        changes,
        len(files),
        selection.describe(),
        caption_files=sum(1 for cf in files if cf.exists),
        unreadable=unreadable,
    )


def edit_changeset(project: Project, cf: CaptionFile, new_text: str) -> ChangeSet:
    """The change set of one caption edited by hand (``cf`` is the caption as the editor read it)."""
    return build_changeset(project, SetText(new_text, label=f"edit {cf.image}"), files=[cf])
