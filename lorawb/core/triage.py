"""Triage: keep / reject / flag decisions, the moves they cause, and the filtered image list.

Images are addressed by their path relative to the project root, in posix form
(``dataset/10_mira/a.png``, ``dataset/rejected/10_mira/a.png``, ``inbox/x.png``),
the same form the app shares between tabs.

Where a decision lives:

- **reject** is on disk: the image and its caption move to ``dataset/rejected/``
  under the same relative subfolder (inbox images to ``inbox/rejected/``), so
  kohya and every other tool stop seeing it even without lorawb. Unreject moves
  them back. Name clashes get a ``-2``, ``-3``... suffix; nothing is overwritten,
  nothing is ever deleted.
- **keep** and **flag** are marks in the state DB (``triage_marks``), with the time.
  Keeping an *inbox* image also moves it (with its caption) into a dataset folder.
- Every decision is appended to ``triage_log`` with the time and the paths before
  and after, so the last one can be undone.

The listing is a view of the project's one image index (lorawb.core.index): the
facts (pixel size after EXIF orientation, mode, caption text, why an image is
unreadable) are those the doctor and the trainer see, read once by the one scanner,
so a second listing of 10,000 images reads no image. A decision's move updates the
index at once (the image keeps its facts under its new name).
"""

from __future__ import annotations

import bisect
import errno
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

from lorawb.core import cast, fsutil, journal, layout, ownwrites, state
from lorawb.core.captions import tag_key, tags_of
from lorawb.core.characters import Character, characters_of
from lorawb.core.confine import WriteScope
from lorawb.core.dataset import ImageFacts
from lorawb.core.index import DATASET, INBOX, IndexDelta, IndexSnapshot, ProjectIndex
from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.words import plural

# Decision states. "unreviewed" is the absence of a decision.
UNREVIEWED = "unreviewed"
KEEP = "keep"
REJECT = "reject"
FLAG = "flag"
STATES = (UNREVIEWED, KEEP, REJECT, FLAG)
# Names accepted by filters and the CLI (plural forms people type).
STATE_ALIASES = {
    "unreviewed": UNREVIEWED,
    "new": UNREVIEWED,
    "keep": KEEP,
    "kept": KEEP,
    "reject": REJECT,
    "rejected": REJECT,
    "flag": FLAG,
    "flagged": FLAG,
}
ACTIONS = ("keep", "reject", "flag", "clear")
SORTS = ("name", "time", "size", "aspect")

SCHEMA = """
CREATE TABLE IF NOT EXISTS triage_marks (
    rel TEXT PRIMARY KEY,          -- current path, relative to the project root
    state TEXT NOT NULL,           -- keep | reject | flag
    origin TEXT,                   -- reject: where the image was before (to move it back)
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS triage_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    action TEXT NOT NULL,          -- keep | reject | flag | clear
    rel TEXT NOT NULL,             -- path before
    new_rel TEXT NOT NULL,         -- path after (differs when the image moved)
    prev_state TEXT NOT NULL,
    prev_origin TEXT
);
"""


class TriageError(LorawbError):
    """A triage decision cannot be carried out (unknown image, missing keep folder...)."""


# --------------------------------------------------------------------------- items


@dataclass(frozen=True)
class TriageItem:
    """One image as triage sees it: where it is, its facts, its caption and its decision."""

    rel: str  # relative to the project root, posix
    area: str  # "dataset" or "inbox"
    folder: str  # subfolder inside the area (rejected/ stripped), posix, "" at the top
    size_bytes: int
    mtime_ns: int
    width: int = 0  # after EXIF orientation; 0 when unreadable
    height: int = 0
    mode: str = ""
    format: str = ""
    error: str | None = None  # why the image could not be read
    caption_rel: str | None = None
    caption_text: str | None = None
    state: str = UNREVIEWED
    decided_at: float | None = None
    content_hash: str = ""  # sha256 of the file's bytes (the index's): equal hashes are exact duplicates

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    @property
    def rejected(self) -> bool:
        return self.state == REJECT

    @property
    def tags(self) -> list[str]:
        return split_tags(self.caption_text or "")

    @cached_property
    def tag_set(self) -> frozenset[str]:
        """The tags' keys (the one tag identity), computed once: tag filters run over 10,000 items."""
        return frozenset(tag_key(t) for t in self.tags)

    @property
    def has_caption(self) -> bool:
        return bool(self.caption_text and self.caption_text.strip())

    @property
    def aspect(self) -> float:
        return self.width / self.height if self.width and self.height else 0.0

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)


def item_of(f: ImageFacts, marks: dict[str, tuple[str, float | None]]) -> TriageItem:
    """One indexed image as triage sees it; ``marks`` are the keep/flag marks by path."""
    rel = f.key
    state, decided = marks.get(rel, (UNREVIEWED, None))
    if f.rejected:
        state = REJECT
    elif state == REJECT:  # moved back by hand: the file system wins
        state, decided = UNREVIEWED, None
    prefix = rel[: len(rel) - len(f.rel)]
    return TriageItem(
        rel=rel,
        area=f.area,
        folder=f.folder,
        size_bytes=f.size_bytes,
        mtime_ns=f.mtime_ns,
        width=f.width,
        height=f.height,
        mode=f.mode,
        format=f.format,
        error=f.error,
        caption_rel=prefix + f.caption_rel if f.caption_rel is not None else None,
        caption_text=f.caption_text,
        state=state,
        decided_at=decided,
        content_hash=f.content_hash,
    )


def split_tags(caption: str) -> list[str]:
    """Tags of a caption (as the caption engine splits them), empty ones dropped."""
    return tags_of(caption)


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class Filter:
    """What the list shows. Every set criterion must hold (AND).

    ``state`` None means every image that is not rejected (the working set);
    "reject" shows the rejected folders.
    """

    area: str = DATASET  # "dataset", "inbox" or "reg"
    state: str | None = None
    missing_caption: bool = False
    low_res: bool = False
    duplicates: bool = False
    has_tag: str | None = None
    lacks_tag: str | None = None
    folder: str | None = None  # subfolder (and everything below it)
    character: str | None = None  # a character's name, a pair (mira+tom), "joint" or "none" (lorawb.core.cast)

    def describe(self) -> str:
        parts = [self.area]
        parts.append(
            {None: "all", UNREVIEWED: "unreviewed", KEEP: "kept", REJECT: "rejected", FLAG: "flagged"}[self.state]
        )
        if self.missing_caption:
            parts.append("no caption")
        if self.low_res:
            parts.append("low-res")
        if self.duplicates:
            parts.append("near-dups")
        if self.has_tag:
            parts.append(f"+{self.has_tag}")
        if self.lacks_tag:
            parts.append(f"-{self.lacks_tag}")
        if self.folder is not None:
            parts.append(f"in {self.folder or '.'}/")
        if self.character:
            parts.append(self.character if self.character == cast.JOINT else f"character:{self.character}")
        return " · ".join(parts)

    def matches(
        self,
        item: TriageItem,
        *,
        min_resolution: int = 0,
        dup_rels: frozenset[str] | set[str] = frozenset(),
        chars: Sequence[Character] = (),
    ) -> bool:
        if item.area != self.area:
            return False
        if self.state is None:
            if item.state == REJECT:
                return False
        elif item.state != self.state:
            return False
        if self.missing_caption and item.has_caption:
            return False
        if self.low_res and not (item.error is None and item.short_side < min_resolution):
            return False
        if self.duplicates and item.rel not in dup_rels:
            return False
        if self.has_tag or self.lacks_tag:
            tags = item.tag_set
            if self.has_tag and tag_key(self.has_tag) not in tags:
                return False
            if self.lacks_tag and tag_key(self.lacks_tag) in tags:
                return False
        if self.folder is not None:
            f = self.folder.strip("/")
            if f and not (item.folder == f or item.folder.startswith(f + "/")):
                return False
        return not self.character or cast.matches(
            cast.held(item.rel, item.folder, item.caption_text, chars), self.character
        )


def character_filter(word: str | None, chars: Sequence[Character]) -> str | None:
    """A character filter as typed (``Mira``, ``mira + tom``, ``joint``) in its one spelling; TriageError
    naming the accepted words for anything else; None or empty clears it."""
    if not word or not word.strip():
        return None
    try:
        return cast.check_filter_word(word, chars)
    except ValueError as exc:
        raise TriageError(str(exc), hint="characters are the [characters.<name>] tables of lorawb.toml") from None


def parse_state(name: str | None) -> str | None:
    """'kept' -> 'keep', 'all'/None -> None; TriageError for anything else."""
    if name is None or name.lower() in ("all", ""):
        return None
    try:
        return STATE_ALIASES[name.lower()]
    except KeyError:
        raise TriageError(
            f"unknown triage state {name!r}", hint="use one of: all, unreviewed, kept, rejected, flagged"
        ) from None


def sort_items(items: Iterable[TriageItem], key: str = "name", reverse: bool = False) -> list[TriageItem]:
    """Sort by name (path), time (mtime), size (file bytes) or aspect (width/height); ties by path."""
    if key not in SORTS:
        raise TriageError(f"unknown sort {key!r}", hint="use one of: " + ", ".join(SORTS))
    keyfn: Callable[[TriageItem], object] = {
        "name": lambda i: i.rel.lower(),
        "time": lambda i: (i.mtime_ns, i.rel),
        "size": lambda i: (i.size_bytes, i.rel),
        "aspect": lambda i: (i.aspect, i.rel),
    }[key]
    return sorted(items, key=keyfn, reverse=reverse)  # type: ignore[arg-type]


def apply_filter(
    items: Iterable[TriageItem],
    flt: Filter,
    *,
    min_resolution: int = 0,
    dup_rels: frozenset[str] | set[str] = frozenset(),
    sort: str = "name",
    reverse: bool = False,
    chars: Sequence[Character] = (),
) -> list[TriageItem]:
    return sort_items(
        (i for i in items if flt.matches(i, min_resolution=min_resolution, dup_rels=dup_rels, chars=chars)),
        sort,
        reverse,
    )


@dataclass(frozen=True)
class Counts:
    total: int = 0  # not rejected
    unreviewed: int = 0
    keep: int = 0
    reject: int = 0
    flag: int = 0
    no_caption: int = 0
    low_res: int = 0
    unreadable: int = 0

    def line(self) -> str:
        return (
            f"{plural(self.total, 'image')} · {self.unreviewed} unreviewed · {self.keep} kept · {self.flag} flagged · "
            f"{self.reject} rejected · {self.no_caption} without caption · {self.low_res} low-res"
        )


def count(items: Iterable[TriageItem], area: str = DATASET, min_resolution: int = 0) -> Counts:
    c: dict[str, int] = dict.fromkeys(Counts.__dataclass_fields__, 0)
    for i in items:
        if i.area != area:
            continue
        c[i.state] += 1
        if i.state == REJECT:
            continue
        c["total"] += 1
        if not i.has_caption:
            c["no_caption"] += 1
        if i.error:
            c["unreadable"] += 1
        elif i.short_side < min_resolution:
            c["low_res"] += 1
    return Counts(**c)


def cast_of(items: Iterable[TriageItem], chars: Sequence[Character], area: str = DATASET) -> cast.Cast | None:
    """Counts per character and pair over the area's images that are not rejected (None: one character)."""
    if len(chars) < 2:
        return None
    held = (cast.held(i.rel, i.folder, i.caption_text, chars) for i in items if i.area == area and i.state != REJECT)
    return cast.Cast.of(held, chars, checks=False)


# --------------------------------------------------------------------------- the store


@dataclass
class Decision:
    """What a decision did: the image's path before and after, and its new state."""

    action: str
    rel: str
    new_rel: str
    state: str
    moved: bool = field(default=False)


class Triage:
    """Decisions and listing for one project. Safe to use from several threads (a DB connection per thread)."""

    def __init__(self, project: Project, index: ProjectIndex | None = None) -> None:
        self.project = project
        self.root = project.root
        self.index = index if index is not None else ProjectIndex(project)
        self._own_index = index is None
        self._local = threading.local()
        # Moves are serialised: two quick rejects must not pick the same free name.
        self._move_lock = threading.Lock()

    # --- plumbing ---------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not state.is_current(conn, self.project.state_dir):
            conn.close()  # .lorawb/ was deleted, or its damaged database moved aside: use the new one
            conn = None
        if conn is None:
            conn = journal.connect(self.project)
            state.ensure_schema(conn, "triage", SCHEMA)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._own_index:
            self.index.close()

    def rel(self, path: Path | str) -> str:
        """Path (absolute or project-relative) -> project-relative posix form."""
        p = Path(path)
        if p.is_absolute():
            p = Path(os.path.relpath(p, self.root))
        return p.as_posix()

    def path(self, rel: str) -> Path:
        return self.root / rel

    @property
    def _dataset_rel(self) -> str:
        return self.rel(self.project.dataset_dir)

    @property
    def _inbox_rel(self) -> str:
        return self.rel(self.project.inbox_dir)

    def area_root(self, area: str) -> Path:
        """The folder of an area (dataset/, inbox/, reg/)."""
        a = next((a for a in self.index.areas if a.name == area), None)
        if a is not None:
            return a.root
        return self.project.dataset_dir if area == DATASET else self.project.inbox_dir

    def locate(self, rel: str) -> tuple[str, bool, str]:
        """(area, rejected, folder) of an image path; TriageError when outside the project's areas."""
        p = PurePosixPath(rel)
        areas = [(a.name, a.prefix) for a in self.index.areas] or [
            (DATASET, self._dataset_rel),
            (INBOX, self._inbox_rel),
        ]
        for area, base in areas:
            try:
                sub = p.relative_to(base)
            except ValueError:
                continue
            parts = sub.parts[:-1]
            rejected = bool(parts) and parts[0] == layout.REJECTED
            if rejected:
                parts = parts[1:]
            return area, rejected, "/".join(parts)
        raise TriageError(
            "not an image of this project's dataset, inbox or reg folder",
            path=self.path(rel),
            hint="triage works on dataset/, inbox/ and reg/",
        )

    # --- listing ----------------------------------------------------------
    def cached_items(self) -> list[TriageItem]:
        """The last listing, from the state DB alone (no disk walk): for an instant first paint.

        ``items()`` must follow to see what changed on disk since.
        """
        snap = self.index.load_cached()
        return self.items_of(snap) if snap is not None else []

    def items(self) -> list[TriageItem]:
        """Every image in dataset/, dataset/rejected/, inbox/ and inbox/rejected/, with its decision.

        Rescans the index: reads images and captions only for files changed since it last looked.
        """
        return self.items_of(self.index.refresh())

    def items_of(self, snap: IndexSnapshot) -> list[TriageItem]:
        """The triage view of an index snapshot (no disk access): its images with their decisions."""
        marks = {r[0]: (r[1], r[2]) for r in self.conn.execute("SELECT rel, state, time FROM triage_marks")}
        out = [item_of(f, marks) for f in snap.facts.values()]
        out.sort(key=lambda i: i.rel)
        return out

    def patched(self, items: list[TriageItem], delta: IndexDelta, snap: IndexSnapshot) -> list[TriageItem]:
        """``items`` brought up to date with one index delta (only the changed images are rebuilt)."""
        touched = delta.keys
        if not touched:
            return items
        if len(touched) * 4 > len(items):
            return self.items_of(snap)  # most of the list changed: rebuild it
        marks = self._marks_of([k for k in touched if k in snap.facts])
        out = [i for i in items if i.rel not in touched]  # still sorted by rel
        keys = [i.rel for i in out]
        for k in sorted(k for k in touched if k in snap.facts):
            at = bisect.bisect_left(keys, k)
            keys.insert(at, k)
            out.insert(at, item_of(snap.facts[k], marks))
        return out

    def _marks_of(self, rels: list[str]) -> dict[str, tuple[str, float | None]]:
        out: dict[str, tuple[str, float | None]] = {}
        for start in range(0, len(rels), 500):
            chunk = rels[start : start + 500]
            q = f"SELECT rel, state, time FROM triage_marks WHERE rel IN ({', '.join('?' for _ in chunk)})"
            out.update({r[0]: (r[1], r[2]) for r in self.conn.execute(q, chunk)})
        return out

    def item(self, rel: str) -> TriageItem:
        self.index.update([self.path(rel)])
        facts = self.index.get(rel)
        if facts is None:
            raise TriageError("no such image", path=self.path(rel))
        return item_of(facts, self._marks_of([rel]))

    def state_of(self, rel: str) -> str:
        area, rejected, _ = self.locate(rel)
        if rejected:
            return REJECT
        row = self.conn.execute("SELECT state FROM triage_marks WHERE rel=?", (rel,)).fetchone()
        if row is None or row["state"] == REJECT:
            return UNREVIEWED
        return row["state"]

    # --- decisions --------------------------------------------------------
    def decide(self, action: str, rel: str, *, keep_folder: str | None = None) -> Decision:
        """Apply ``action`` (keep / reject / flag / clear) to one image; returns what happened."""
        if action == "keep":
            return self.keep(rel, folder=keep_folder)
        if action == "reject":
            return self.reject(rel)
        if action == "flag":
            return self.flag(rel)
        if action == "clear":
            return self.clear(rel)
        raise TriageError(f"unknown triage action {action!r}", hint="use keep, reject, flag or clear")

    def keep(self, rel: str, folder: str | None = None) -> Decision:
        """Mark as kept. A rejected image is moved back first; an inbox image moves into a dataset folder.

        ``folder`` (a dataset subfolder) defaults to lorawb.toml ``[triage] keep_folder``.
        """
        self._require(rel)
        area, rejected, _ = self.locate(rel)
        if rejected:
            rel = self.clear(rel).new_rel
            area, rejected, _ = self.locate(rel)
        if area == INBOX:
            return self._keep_inbox(rel, folder)
        prev, prev_origin = self._mark(rel)
        self._commit({"mark": [rel, KEEP, None], "log": ["keep", rel, rel, prev, prev_origin]})
        return Decision("keep", rel, rel, KEEP)

    def _keep_inbox(self, rel: str, folder: str | None) -> Decision:
        folder = (folder if folder is not None else self.project.config.triage.keep_folder).strip().strip("/")
        if not folder:
            raise TriageError(
                "keeping an inbox image needs a dataset folder to move it into",
                path=self.project.config_path,
                hint='set [triage] keep_folder in lorawb.toml (e.g. "10_zkx_mira") or choose one',
            )
        parts = PurePosixPath(folder).parts
        if ".." in parts or PurePosixPath(folder).is_absolute() or parts[0] == layout.REJECTED:
            raise TriageError(
                f"keep folder {folder!r} must be a folder inside {self._dataset_rel}/ (not rejected/)",
                path=self.project.config_path,
            )
        target_dir = self.project.dataset_dir / folder
        prev, prev_origin = self._mark(rel)
        new_rel = self._move_with_caption(
            rel,
            target_dir,
            lambda new: {"drop": [rel], "mark": [new, KEEP, rel], "log": ["keep", rel, new, prev, prev_origin]},
            "keep",
        )
        return Decision("keep", rel, new_rel, KEEP, moved=True)

    def flag(self, rel: str) -> Decision:
        """Mark for a second look. A rejected image is moved back first."""
        self._require(rel)
        if self.locate(rel)[1]:
            rel = self.clear(rel).new_rel
        prev, prev_origin = self._mark(rel)
        self._commit({"mark": [rel, FLAG, None], "log": ["flag", rel, rel, prev, prev_origin]})
        return Decision("flag", rel, rel, FLAG)

    def reject(self, rel: str) -> Decision:
        """Move the image and its caption into rejected/ (same subfolder); already rejected: no-op."""
        self._require(rel)
        area, rejected, folder = self.locate(rel)
        if rejected:
            return Decision("reject", rel, rel, REJECT)
        base = self.area_root(area)
        target_dir = base / layout.REJECTED / folder
        prev, prev_origin = self._mark(rel)
        new_rel = self._move_with_caption(
            rel,
            target_dir,
            lambda new: {"drop": [rel], "mark": [new, REJECT, rel], "log": ["reject", rel, new, prev, prev_origin]},
            "reject",
        )
        return Decision("reject", rel, new_rel, REJECT, moved=True)

    def clear(self, rel: str) -> Decision:
        """Back to unreviewed. A rejected image moves back to where it came from (its own name if free)."""
        self._require(rel)
        area, rejected, folder = self.locate(rel)
        prev, prev_origin = self._mark(rel)
        if not rejected:
            self._commit({"drop": [rel], "log": ["clear", rel, rel, prev, prev_origin]})
            return Decision("clear", rel, rel, UNREVIEWED)
        origin = prev_origin if prev == REJECT and prev_origin else None
        if origin is not None:
            target_dir = self.path(origin).parent
        else:  # no record (state DB deleted, or rejected by hand): mirror the rejected/ layout
            base = self.area_root(area)
            target_dir = base / folder
        new_rel = self._move_with_caption(
            rel,
            target_dir,
            lambda new: {"drop": [rel], "log": ["clear", rel, new, REJECT, prev_origin]},
            "unreject",
            prefer_name=PurePosixPath(origin).name if origin else None,
        )
        return Decision("clear", rel, new_rel, UNREVIEWED, moved=True)

    def undo_last(self) -> Decision | None:
        """Undo the most recent decision (moves included); None when there is nothing to undo."""
        journal.recover(self.project)
        row = self.conn.execute("SELECT * FROM triage_log ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        new_rel, old_rel = row["new_rel"], row["rel"]
        if not self.path(new_rel).exists():
            raise TriageError(
                "cannot undo: the image is no longer where the last decision put it", path=self.path(new_rel)
            )

        def effects(back: str) -> dict:
            out: dict = {"drop": [new_rel], "unlog": row["id"]}
            if row["prev_state"] in (KEEP, FLAG, REJECT) and (row["prev_state"] != REJECT or self.locate(back)[1]):
                out["mark"] = [back, row["prev_state"], row["prev_origin"]]
            return out

        if new_rel != old_rel:
            back = self._move_with_caption(
                new_rel, self.path(old_rel).parent, effects, "undo", prefer_name=PurePosixPath(old_rel).name
            )
        else:
            back = old_rel
            self._commit(effects(back))
        state = self.state_of(back)
        return Decision("undo", new_rel, back, state, moved=new_rel != back)

    def history(self, limit: int = 50) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM triage_log ORDER BY id DESC LIMIT ?", (limit,)).fetchall()

    # --- DB helpers -------------------------------------------------------
    def _require(self, rel: str) -> None:
        if not _storable(rel):
            raise TriageError("the file name is not valid UTF-8", path=self.path(rel), hint="rename the file")
        if not self.path(rel).is_file():
            raise TriageError("no such image (moved or deleted outside lorawb?)", path=self.path(rel))

    def _mark(self, rel: str) -> tuple[str, str | None]:
        row = self.conn.execute("SELECT state, origin FROM triage_marks WHERE rel=?", (rel,)).fetchone()
        return (row["state"], row["origin"]) if row else (UNREVIEWED, None)

    def _commit(self, effects: dict, token: str | None = None) -> None:
        """A decision's marks and log line in one transaction (and its journal row gone, for a move)."""
        with state.transaction(self.conn):
            commit_effects(self.conn, effects)
            if token is not None:
                journal.finish(self.conn, token)

    # --- moves ------------------------------------------------------------
    def _move_with_caption(
        self,
        rel: str,
        target_dir: Path,
        effects: Callable[[str], dict],
        action: str,
        prefer_name: str | None = None,
    ) -> str:
        """Move an image and its caption files into ``target_dir`` under one free stem, journaled; the
        decision's marks and log (``effects(new_rel)``) are recorded in the same transaction that ends
        the journal entry. Returns the new rel. Nothing is half moved: a failure puts back what moved."""
        src = self.path(rel)
        captions = [src.with_suffix(ext) for ext in layout.CAPTION_EXTS if src.with_suffix(ext).is_file()]
        scope = WriteScope(self.project)
        for path in (src, target_dir / src.name):
            why = scope.refuse(path)
            if why is not None:
                raise TriageError(f"not moved: {why}", path=path)
        with self._move_lock:
            try:
                target_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _move_error(exc, src, target_dir) from exc
            stem = free_stem(target_dir, Path(prefer_name).stem if prefer_name else src.stem, src.suffix)
            dst = target_dir / (stem + src.suffix)
            pairs = [(src, dst)] + [(cap, target_dir / (stem + cap.suffix)) for cap in captions]
            new_rel = self.rel(dst)
            done_effects = effects(new_rel)
            done_effects["hash"] = [rel, new_rel]
            token = fsutil.new_tag()
            with journal.holding(self.project, token):
                payload = {
                    "action": action,
                    "moves": [[self.rel(a), self.rel(b)] for a, b in pairs],
                    "effects": done_effects,
                }
                with state.transaction(self.conn, durable=True):
                    journal.record(self.conn, "triage", __name__, token, payload)
                done: list[tuple[Path, Path]] = []
                try:
                    for a, b in pairs:
                        fsutil.kill_point("move")
                        move_no_clobber(a, b, tag=token)
                        done.append((b, a))
                except OSError as exc:
                    for moved, orig in reversed(done):  # put everything back: never half a move
                        try:
                            move_no_clobber(moved, orig, tag=token)
                        except OSError:
                            pass
                    _forget(self.conn, token)
                    raise _move_error(exc, src, target_dir) from exc
                try:
                    self._commit(done_effects, token)
                except state.DiskFullError as exc:
                    raise TriageError(
                        f"disk full: {src.name} was moved to {new_rel}, but the decision could not be recorded; "
                        "the next lorawb command records it (then undo takes it back)",
                        path=exc.path,
                        hint="free some space",
                    ) from exc
        # The index follows the move at once (the image keeps its facts).
        self.index.update([path for pair in pairs for path in pair])
        return new_rel


def commit_effects(conn: sqlite3.Connection, e: dict) -> None:
    """What a decision records (inside the caller's transaction): marks dropped and set, its log line
    (or the log line an undo takes back), and the perceptual hash following the image."""
    for rel in e.get("drop", []):
        conn.execute("DELETE FROM triage_marks WHERE rel=?", (rel,))
    if e.get("mark"):
        rel, mark, origin = e["mark"]
        conn.execute(
            "INSERT OR REPLACE INTO triage_marks (rel, state, origin, time) VALUES (?,?,?,?)",
            (rel, mark, origin, time.time()),
        )
    if e.get("log"):
        conn.execute(
            "INSERT INTO triage_log (time, action, rel, new_rel, prev_state, prev_origin) VALUES (?,?,?,?,?,?)",
            (time.time(), *e["log"]),
        )
    if e.get("unlog") is not None:
        conn.execute("DELETE FROM triage_log WHERE id=?", (e["unlog"],))
    if e.get("hash"):
        _move_hash_row(conn, *e["hash"])


def _forget(conn: sqlite3.Connection, token: str) -> None:
    try:
        with state.transaction(conn):
            journal.finish(conn, token)
    except sqlite3.Error:
        pass  # the next recovery finds nothing moved and drops it


def _move_error(exc: OSError, src: Path, target_dir: Path) -> TriageError:
    """A move that failed, in words: which folder cannot be written (a read-only dataset), or why; nothing moved."""
    for folder in (target_dir, src.parent):
        probe = folder if folder.exists() else folder.parent
        if probe.exists() and not os.access(probe, os.W_OK):
            return TriageError(
                f"cannot move {src.name}: the folder {folder} is read-only; nothing was moved",
                path=src,
                hint="make it writable (chmod u+w, or mount it read-write) and try again",
            )
    err = fsutil.write_error(exc, None, "nothing was moved")
    return TriageError(f"cannot move {src.name}: {err.message}", path=src, hint=err.hint)


def free_stem(folder: Path, stem: str, image_ext: str) -> str:
    """``stem`` if no image or caption of that stem exists in ``folder``, else ``stem-2``, ``stem-3``...

    Any image extension counts: kohya pairs ``a.png`` and ``a.jpg`` with the same ``a.txt``.
    """
    exts = {*layout.IMAGE_EXTS, *layout.CAPTION_EXTS, image_ext.lower()}
    try:
        taken = {os.path.splitext(n)[0].lower() for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in exts}
    except FileNotFoundError:
        taken = set()
    if stem.lower() not in taken:
        return stem
    n = 2
    while f"{stem}-{n}".lower() in taken:
        n += 1
    return f"{stem}-{n}"


def move_no_clobber(src: Path, dst: Path, tag: str | None = None) -> None:
    """Move a file without ever replacing an existing one (hard link + unlink, else copy + unlink).

    Raises FileExistsError if ``dst`` exists. Across file systems the copy is made under a temp
    name (``tag``: a journaled move's) and linked into place whole: ``dst`` is never half a file.
    """
    with ownwrites.writing([src, dst]):
        try:
            os.link(src, dst)  # atomic: fails if dst exists
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EOPNOTSUPP):
                raise
            if dst.exists():
                raise FileExistsError(errno.EEXIST, "file exists", str(dst)) from None
            tmp = fsutil.temp_name(dst, tag)
            try:
                shutil.copy2(src, tmp)  # another file system: copy keeps the mtime, then drop the original
                os.link(tmp, dst)
            finally:
                with suppress(OSError):
                    os.unlink(tmp)
        os.unlink(src)


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def recover_entry(project: Project, entry: journal.Entry) -> str | None:
    """Finish (or drop) a triage move a killed process left half done; says what it did.

    Each file is at its old place, its new one, or both (linked, not yet unlinked: the same
    file). If any file reached its new place the rest follow and the decision is recorded (so
    ``backspace`` / ``triage --undo`` takes it back); if none had, the move is dropped.
    """
    root = project.root
    pairs = [(root / a, root / b) for a, b in entry.payload["moves"]]
    folders = {p.parent for pair in pairs for p in pair}
    for a, b in pairs:  # linked but not unlinked: the move of that file is done but for the unlink
        if a.exists() and b.exists() and same_file(a, b):
            with suppress(OSError):
                os.unlink(a)
    moved = [b.exists() and not a.exists() for a, b in pairs]
    action, image = entry.payload.get("action", "move"), entry.payload["moves"][0][0]
    if not any(moved):
        journal.drop(project, entry, list(folders))
        return f"an interrupted triage {action} of {image} had moved nothing yet: dropped"
    left: list[str] = []
    for (a, b), ok in zip(pairs, moved, strict=True):
        if not ok:
            try:
                move_no_clobber(a, b, tag=entry.token)
            except OSError as exc:
                left.append(f"{a.name} ({exc.strerror or exc})")
    fsutil.remove_leftovers(folders, entry.token)
    conn = journal.connect(project)
    try:
        state.ensure_schema(conn, "triage", SCHEMA)
        with state.transaction(conn):
            commit_effects(conn, entry.payload["effects"])
            journal.finish(conn, entry.token)
    finally:
        conn.close()
    text = f"finished an interrupted triage {action} of {image}: now {entry.payload['moves'][0][1]}"
    if left:
        text += "; not moved: " + ", ".join(left)
    return text


def _storable(rel: str) -> bool:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _move_hash_row(conn: sqlite3.Connection, rel: str, new_rel: str) -> None:
    # dedupe's cache follows moves too; its table may not exist yet in this DB.
    try:
        conn.execute("UPDATE OR REPLACE dedupe_hashes SET rel=? WHERE rel=?", (new_rel, rel))
    except sqlite3.OperationalError:
        pass


# --------------------------------------------------------------------------- convenience


def list_items(
    project: Project,
    flt: Filter | None = None,
    *,
    sort: str = "name",
    reverse: bool = False,
    dup_rels: Sequence[str] | set[str] = (),
) -> list[TriageItem]:
    """The filtered, sorted image list (what the grid and ``lorawb triage --list`` show)."""
    t = Triage(project)
    try:
        items = t.items()
    finally:
        t.close()
    return apply_filter(
        items,
        flt or Filter(),
        min_resolution=project.config.project.min_resolution,
        dup_rels=frozenset(dup_rels),
        sort=sort,
        reverse=reverse,
        chars=characters_of(project.config),
    )
