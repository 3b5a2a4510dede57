"""The project's image index: every image the project holds, kept in the state DB (.lorawb/state.sqlite).

One index describes every image under the project's *areas*: ``dataset/`` (its
``rejected/`` included) and ``inbox/`` (and its ``rejected/``). ``project_areas``
lists them; another root (``reg/`` for regularisation images) is one more ``Area``.
Every view reads it: the doctor and the trainer (the dataset, rejects left out),
Triage (every area), Captions (the caption text and stat of each image), the header
counts and the matrix promotion. One scanner fills it (``lorawb.core.dataset``, the
one safe image reader).

Images are keyed by their path relative to the project folder, posix
(``dataset/10_mira/a.png``), the form the app shares between tabs.

- ``refresh()`` walks every area; an image whose size and mtime are unchanged is not
  opened (its caption is re-stat'ed, re-read only if it changed); a file moved or a
  folder renamed keeps its facts (found by name, size and mtime); removed files leave.
- ``update(paths)`` looks only at the given paths (files or folders): what the file
  watcher and the app's own writes hand in. No full walk; one SQLite transaction.
- ``load_cached()`` returns the last state from the DB alone, for the app's first paint.

The folder stays the source of truth: deleting .lorawb/ only costs one full scan.
Each thread gets its own SQLite connection; the in-memory view is guarded by a lock,
so a worker thread can refresh while the UI thread reads a snapshot.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from lorawb.core import layout, state
from lorawb.core.dataset import (
    ImageFacts,
    Progress,
    ScanResult,
    bad_name_facts,
    caption_stat_matches,
    encodable,
    place,
    printable_name,
    read_many,
    scan_dataset,
    unreadable_facts,
    walk_order,
    with_caption,
)
from lorawb.core.project import Project

DATASET = "dataset"
INBOX = "inbox"
REG = "reg"  # regularisation images (kohya's N_class folders), an area when the project has reg/

_TABLE = "images_v2"
_AREAS = "image_areas_v2"
_COLUMNS = [f.name for f in fields(ImageFacts)]
_DDL = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    key TEXT PRIMARY KEY,
    area TEXT NOT NULL,
    rel TEXT NOT NULL,
    folder TEXT NOT NULL,
    repeats INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    mode TEXT NOT NULL,
    format TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    caption_rel TEXT,
    caption_text TEXT,
    caption_encoding TEXT,
    caption_newline TEXT,
    caption_mtime_ns INTEGER NOT NULL,
    caption_size INTEGER NOT NULL,
    error TEXT,
    problems TEXT NOT NULL,
    rejected INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {_TABLE}_hash ON {_TABLE} (content_hash);
CREATE TABLE IF NOT EXISTS {_AREAS} (
    area TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    scanned_at REAL NOT NULL,
    orphans TEXT NOT NULL,     -- JSON list of caption rels with no image
    problems TEXT NOT NULL     -- JSON list of [rel, reason]: folders that could not be listed
);
"""
# Stored in this column order (the dataclass order, key and area first for the primary key).
_STORED = ["key", "area", *[c for c in _COLUMNS if c not in ("key", "area")]]


@dataclass(frozen=True)
class Area:
    """One folder of the project whose images the index holds."""

    name: str  # "dataset", "inbox", "reg"
    root: Path
    prefix: str  # the folder relative to the project root, posix: keys start with prefix + "/"

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}"


def project_areas(project: Project) -> tuple[Area, ...]:
    """The project's image folders, in the order views list them."""
    out = []
    for name, folder in ((DATASET, project.dataset_dir), (INBOX, project.inbox_dir)):
        out.append(Area(name, folder, _rel(project.root, folder)))
    if project.reg_dir.is_dir():
        out.append(Area(REG, project.reg_dir, _rel(project.root, project.reg_dir)))
    return tuple(out)


def _rel(root: Path, path: Path | str) -> str:
    r, p = str(root), os.fspath(path)
    if p.startswith(r) and p[len(r) : len(r) + 1] == os.sep:
        return p[len(r) + 1 :].replace(os.sep, "/")
    return Path(os.path.relpath(p, r)).as_posix()


@dataclass(frozen=True)
class ImageCounts:
    """The one count of an area's images that every view shows (header, Triage, Captions, stats, bulk edits).

    ``images`` counts every image file, readable or not (the unreadable ones are named,
    never silently dropped); rejected images are not counted.
    """

    images: int = 0
    unreadable: tuple[tuple[str, str], ...] = ()  # (key, reason)
    caption_files: int = 0  # images with a caption file beside them
    captioned: int = 0  # ... whose caption is not empty
    rejected: int = 0


@dataclass
class IndexSnapshot:
    """What the index holds at one moment: every image of every area, orphan captions, folder problems."""

    root: Path  # the project folder
    areas: tuple[Area, ...]
    facts: dict[str, ImageFacts]  # key -> facts (usable or not)
    orphans: dict[str, list[str]] = field(default_factory=dict)  # area -> caption rels without an image
    problems: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # area -> (rel, reason)
    opened: int = 0  # images read by the refresh that made this snapshot

    def area(self, name: str) -> Area | None:
        return next((a for a in self.areas if a.name == name), None)

    def images(self, area: str | None = None, *, rejected: bool | None = False) -> list[ImageFacts]:
        """Facts of one area (or all), in walk order; ``rejected`` None means both."""
        names = [a.name for a in self.areas]
        out = [
            f
            for f in self.facts.values()
            if (area is None or f.area == area) and (rejected is None or f.rejected == rejected)
        ]
        out.sort(key=lambda f: (names.index(f.area) if f.area in names else len(names), walk_order(f.rel)))
        return out

    def scan_result(self, area: str = DATASET) -> ScanResult:
        """The area as the doctor and the trainer see it: rejected images left out."""
        a = self.area(area)
        result = ScanResult(root=a.root if a else self.root)
        result.unreadable = [tuple(x) for x in self.problems.get(area, [])]  # type: ignore[misc]
        for f in self.images(area):
            result.add(f)
        result.unreadable.sort(key=lambda item: walk_order(item[0]))
        result.orphan_captions = [r for r in self.orphans.get(area, []) if place(r)["rejected"] is False]
        result.opened = self.opened
        return result

    def counts(self, area: str = DATASET) -> ImageCounts:
        images = unreadable = caption_files = captioned = rejected = 0
        bad: list[tuple[str, str]] = []
        for f in self.facts.values():
            if f.area != area:
                continue
            if f.rejected:
                rejected += 1
                continue
            images += 1
            if f.error is not None:
                unreadable += 1
                bad.append((f.key, f.error))
            if f.caption_rel is not None:
                caption_files += 1
                if (f.caption_text or "").strip():
                    captioned += 1
        bad.sort(key=lambda kv: walk_order(kv[0]))
        return ImageCounts(images, tuple(bad), caption_files, captioned, rejected)


@dataclass
class IndexDelta:
    """What an update (or a refresh) changed, by key."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # the image or its caption changed
    removed: list[str] = field(default_factory=list)
    moved: dict[str, str] = field(default_factory=dict)  # old key -> new key (facts kept, not re-read)
    captions: set[str] = field(default_factory=set)  # keys whose caption text or file changed
    orphans: bool = False  # the orphan captions changed
    opened: int = 0  # images read

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.orphans)

    @property
    def keys(self) -> set[str]:
        return {*self.added, *self.changed, *self.removed}


class ProjectIndex:
    """The index of one project's images. Cheap to create; the DB is opened on first use."""

    def __init__(self, project: Project, areas: tuple[Area, ...] | None = None) -> None:
        self.project = project
        self.areas = areas if areas is not None else project_areas(project)
        self._local = threading.local()
        self._lock = threading.RLock()
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._facts: dict[str, ImageFacts] | None = None  # the in-memory view (after load or refresh)
        self._orphans: dict[str, list[str]] = {}
        self._problems: dict[str, list[tuple[str, str]]] = {}
        self._opened = 0
        self._stems: dict[str, set[str]] | None = None  # key without extension -> keys (captions find images)
        self.last_delta = IndexDelta()

    # --- reading ----------------------------------------------------------------------
    def load_cached(self) -> IndexSnapshot | None:
        """The last state as stored, without looking at the folders; None if there is none (or it was of other folders)."""
        with self._lock:
            conn = self._conn()  # first: it notices a deleted .lorawb/ (and forgets the view below)
            if self._facts is not None:
                return self.snapshot()  # what is in memory is what was stored (every change is stored at once)
            meta = self._area_meta(conn)
            if not meta or any(meta.get(a.name, {}).get("root") != str(a.root) for a in self.areas):
                return None
            self._load(conn, meta)
            return self.snapshot()

    def snapshot(self) -> IndexSnapshot:
        """The in-memory view now (loaded from the DB first if need be; no disk walk)."""
        with self._lock:
            if self._facts is None:
                conn = self._conn()
                self._load(conn, self._area_meta(conn))
            assert self._facts is not None
            return IndexSnapshot(
                self.project.root,
                self.areas,
                dict(self._facts),
                {k: list(v) for k, v in self._orphans.items()},
                {k: list(v) for k, v in self._problems.items()},
                self._opened,
            )

    def get(self, key: str) -> ImageFacts | None:
        """The facts of one image (usable or not), by its project-relative key."""
        with self._lock:
            if self._facts is not None:
                return self._facts.get(key)
            row = self._conn().execute(f"SELECT {', '.join(_STORED)} FROM {_TABLE} WHERE key = ?", (key,)).fetchone()
        return _facts_from_row(row) if row is not None else None

    def duplicates_of(self, content_hash: str) -> list[str]:
        """Keys of the images with exactly these bytes."""
        with self._lock:
            rows = self._conn().execute(
                f"SELECT key FROM {_TABLE} WHERE content_hash = ? ORDER BY key", (content_hash,)
            )
            return [r[0] for r in rows]

    def area_of(self, path: Path | str) -> tuple[Area, str] | None:
        """(area, rel) of a path under one of the areas; None elsewhere."""
        p = os.fspath(path)
        for a in self.areas:
            base = os.fspath(a.root)
            if p.startswith(base) and p[len(base) : len(base) + 1] == os.sep:
                return a, p[len(base) + 1 :].replace(os.sep, "/")
        return None

    # --- scanning ---------------------------------------------------------------------
    def refresh(self, progress: Progress | None = None) -> IndexSnapshot:
        """Walk every area, opening only new or changed images; store and return the result.

        What changed since the stored state is in ``last_delta``.
        """
        with self._lock:
            conn = self._conn()
            meta = self._area_meta(conn)
            known = {f.key: f for f in self._rows(conn)}
            delta = IndexDelta()
            facts: dict[str, ImageFacts] = {}
            orphans: dict[str, list[str]] = {}
            problems: dict[str, list[tuple[str, str]]] = {}
            opened = 0
            for area in self.areas:
                if meta.get(area.name, {}).get("root") != str(area.root):
                    known = {k: f for k, f in known.items() if f.area != area.name}  # another folder's
                result = self._scan_area(area, known, progress)
                opened += result.opened
                for f in result.images + result.broken:
                    facts[f.key] = f
                orphans[area.name] = result.orphan_captions
                problems[area.name] = [(r, why) for r, why in result.unreadable if area.key(r) not in facts]
            _diff(known, facts, delta)
            delta.opened = opened
            delta.orphans = orphans != self._orphans
            self._store(conn, known, facts, delta, orphans, problems, full=True)
            self._facts, self._orphans, self._problems, self._opened = facts, orphans, problems, opened
            self._stems = None
            self.last_delta = delta
            return self.snapshot()

    def scan(self, area: str = DATASET, progress: Progress | None = None) -> ScanResult:
        """Refresh, then the area as the doctor and the trainer see it (rejects left out)."""
        return self.refresh(progress).scan_result(area)

    def _scan_area(self, area: Area, known: dict[str, ImageFacts], progress: Progress | None) -> ScanResult:
        # A renamed folder (say 10_mira -> 20_mira, to change repeats) keeps its files' names, sizes and
        # mtimes: find them by those, so a rename does not mean reading every image again.
        moved = {(f.area, f.name, f.size_bytes, f.mtime_ns): f for f in known.values()}

        def reuse(rel: str, size: int, mtime_ns: int) -> ImageFacts | None:
            f = known.get(area.key(rel))
            if f is None or f.size_bytes != size or f.mtime_ns != mtime_ns:
                f = moved.get((area.name, rel.rsplit("/", 1)[-1], size, mtime_ns))
                if f is None:
                    return None
                f = replace(f, rel=rel, key=area.key(rel), **place(rel))
            if f.error is not None and f.error.startswith("cannot read"):
                return None  # permissions may have been fixed without touching mtime: try again
            return f

        if not area.root.is_dir():
            if area.name == DATASET:
                scan_dataset(area.root)  # raises the ProjectError that says what to do
            return ScanResult(root=area.root)
        result = scan_dataset(area.root, reuse=reuse, progress=progress, include_rejected=True)
        for f in result.images + result.broken:
            f.area, f.key = area.name, area.key(f.rel)
        return result

    def update(self, paths: Iterable[Path | str]) -> IndexDelta:
        """Bring the index up to date for these paths only (files or folders, present or gone).

        An image path is re-stat'ed (and read when new or changed; a moved file keeps its facts);
        a caption path updates its image's caption and the orphan list; a folder path is
        rescanned below it. Anything outside the areas, hidden, or not an image or caption is
        ignored. One transaction; returns what changed.
        """
        with self._lock:
            if self._facts is None:
                cached = self.load_cached()
                if cached is None:
                    self.refresh()
                    return self.last_delta
            assert self._facts is not None
            facts = self._facts
            images: dict[str, tuple[Area, str]] = {}
            captions: set[str] = set()  # caption paths touched
            for raw in paths:
                hit = self.area_of(raw)
                if hit is None:
                    continue
                area, rel = hit
                if any(part.startswith(".") for part in rel.split("/")):
                    continue  # hidden files, temp files of atomic writes
                ext = os.path.splitext(rel)[1].lower()
                p = os.fspath(raw)
                if ext in layout.IMAGE_EXTS and not os.path.isdir(p):
                    images[p] = (area, rel)
                elif ext in layout.CAPTION_EXTS and not os.path.isdir(p):
                    captions.add(p)
                elif os.path.isdir(p) or any(k.startswith(area.key(rel) + "/") for k in facts):
                    self._subtree(area, rel, images, captions)
                    continue
            listings: dict[str, dict[str, list[str]]] = {}
            for cap in captions:
                for img in self._indexed_beside(cap) or _images_beside(cap, listings):
                    hit = self.area_of(img)
                    if hit is not None:
                        images.setdefault(img, hit)
            delta = self._update_images(images)
            self._update_orphans(captions | {c for p in images for c in _captions_of(p)}, delta)
            if delta:
                conn = self._conn()
                self._store(conn, None, facts, delta, self._orphans, self._problems, full=False)
            return delta

    def _subtree(self, area: Area, rel: str, images: dict[str, tuple[Area, str]], captions: set[str]) -> None:
        """Every image known or on disk below a folder (a folder created, deleted, moved or renamed)."""
        assert self._facts is not None
        prefix = area.key(rel) + "/"
        for f in self._facts.values():
            if f.key.startswith(prefix):
                images[os.path.join(area.root, f.rel)] = (area, f.rel)
        top = area.root / rel
        if top.is_dir():
            found: list[Path] = []
            errors: list[tuple[Path, str]] = []
            for p in layout.walk_images(top, skip_rejected=False, errors=errors, captions=found):
                images[os.fspath(p)] = (area, f"{rel}/{_rel(top, p)}")
            for p, reason in errors:
                if layout.is_image(p) and not reason.startswith(layout.FOLDER_ERROR):
                    images[os.fspath(p)] = (area, f"{rel}/{_rel(top, p)}")
            captions.update(os.fspath(c) for c in found)
        for f in self._orphans.get(area.name, []):
            if f.startswith(rel + "/"):
                captions.add(os.path.join(area.root, f))

    def _update_images(self, images: dict[str, tuple[Area, str]]) -> IndexDelta:
        assert self._facts is not None
        facts = self._facts
        delta = IndexDelta()
        present: dict[str, tuple[Area, str, os.stat_result | None]] = {}
        gone: list[str] = []
        for p, (area, rel) in images.items():
            key = area.key(printable_name(rel))
            if not encodable(rel):
                if os.path.lexists(p):
                    bad = bad_name_facts(rel)
                    bad.area, bad.key = area.name, key
                    if facts.get(key) != bad:
                        (delta.changed if key in facts else delta.added).append(key)
                        self._put(key, bad)
                elif key in facts:
                    gone.append(key)
                continue
            try:
                st = os.stat(p)
            except OSError:
                bad = unreadable_facts(Path(p), area.root)
                if bad is None:
                    if key in facts:
                        gone.append(key)
                    continue
                bad.area, bad.key = area.name, key
                if facts.get(key) != bad:
                    (delta.changed if key in facts else delta.added).append(key)
                    self._put(key, bad)
                continue
            present[p] = (area, rel, st)
        # A file that left one place and appeared in another (a move, a renamed folder) keeps its facts.
        leaving = {(facts[k].area, facts[k].name, facts[k].size_bytes, facts[k].mtime_ns): k for k in gone}
        anywhere = None
        to_read: list[tuple[str, Area, str]] = []
        for p, (area, rel, st) in present.items():
            assert st is not None
            key = area.key(rel)
            old = facts.get(key)
            if (
                old is not None
                and (old.size_bytes, old.mtime_ns) == (st.st_size, st.st_mtime_ns)
                and not (old.error or "").startswith("cannot read")
            ):
                if caption_stat_matches(old, Path(p)):
                    continue
                new = with_caption(old, Path(p), area.root)
                if new != old:
                    self._put(key, new)
                    delta.changed.append(key)
                    if _caption_of(new) != _caption_of(old):
                        delta.captions.add(key)
                continue
            sig = (area.name, rel.rsplit("/", 1)[-1], st.st_size, st.st_mtime_ns)
            source = leaving.pop(sig, None)
            if source is None and old is None:
                if anywhere is None:
                    anywhere = {(f.area, f.name, f.size_bytes, f.mtime_ns): f.key for f in facts.values()}
                copy = anywhere.get(sig)
                base = facts.get(copy) if copy is not None else None
                if base is not None and copy not in gone and not os.path.lexists(self._path_of(base)):
                    # Its old place is empty too, but that event has not come yet (a move into a folder
                    # created a moment before reaches inotify as a create here and, later, a delete there).
                    source = copy
                    gone.append(copy)
            else:
                base = facts.get(source) if source is not None else None
            if base is not None and base.error is None:
                new = with_caption(replace(base, rel=rel, key=key, area=area.name, **place(rel)), Path(p), area.root)
                if source is not None:
                    gone.remove(source)
                    self._drop(source)
                    delta.removed.append(source)
                    delta.moved[source] = key
                (delta.changed if old is not None else delta.added).append(key)
                delta.captions.add(key)
                self._put(key, new)
                continue
            to_read.append((p, area, rel))
        for (_p, area, rel), new in zip(
            to_read, read_many([Path(p) for p, _, _ in to_read], [a.root for _, a, _ in to_read]), strict=True
        ):
            key = area.key(rel)
            new.area, new.key = area.name, key
            old = facts.get(key)
            (delta.changed if old is not None else delta.added).append(key)
            if old is None or _caption_of(new) != _caption_of(old):
                delta.captions.add(key)
            self._put(key, new)
        delta.opened = len(to_read)
        for key in gone:
            if key in facts:
                self._drop(key)
                delta.removed.append(key)
        return delta

    def _path_of(self, f: ImageFacts) -> str:
        area = next((a for a in self.areas if a.name == f.area), None)
        return os.path.join(area.root, f.rel) if area is not None else os.path.join(self.project.root, f.key)

    def _put(self, key: str, f: ImageFacts) -> None:
        assert self._facts is not None
        if key not in self._facts and self._stems is not None:
            self._stems.setdefault(os.path.splitext(key)[0], set()).add(key)
        self._facts[key] = f

    def _drop(self, key: str) -> None:
        assert self._facts is not None
        del self._facts[key]
        if self._stems is not None:
            self._stems.get(os.path.splitext(key)[0], set()).discard(key)

    def _indexed_beside(self, caption: str) -> list[str]:
        """The indexed images of the same stem as a caption (a.png and a.jpg both go with a.txt), as paths."""
        hit = self.area_of(caption)
        if hit is None or self._facts is None:
            return []
        if self._stems is None:
            self._stems = {}
            for key in self._facts:
                self._stems.setdefault(os.path.splitext(key)[0], set()).add(key)
        area, rel = hit
        keys = self._stems.get(area.key(os.path.splitext(rel)[0]), ())
        return [os.path.join(area.root, self._facts[k].rel) for k in keys if k in self._facts]

    def _update_orphans(self, captions: set[str], delta: IndexDelta) -> None:
        changed = False
        for cap in captions:
            hit = self.area_of(cap)
            if hit is None:
                continue
            area, rel = hit
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            current = self._orphans.setdefault(area.name, [])
            is_orphan = os.path.isfile(cap) and not self._indexed_beside(cap)
            if is_orphan and rel not in current:
                current.append(rel)
                current.sort(key=walk_order)
                changed = True
            elif not is_orphan and rel in current:
                current.remove(rel)
                changed = True
        delta.orphans |= changed

    def clear(self) -> None:
        """Forget the index (the next refresh is a full scan)."""
        with self._lock:
            conn = self._conn()
            with state.transaction(conn):
                conn.execute(f"DELETE FROM {_TABLE}")
                conn.execute(f"DELETE FROM {_AREAS}")
            self._facts = None

    def close(self, wait: float = 5.0) -> bool:
        """Close every connection this index opened; False if a scan kept them open.

        Every use of a connection holds the index lock, so closing waits (up to ``wait``
        seconds) for a refresh running in another thread: closing a SQLite connection under
        a thread that is writing through it crashes the process. A scan still running after
        that keeps its connections; they close when the process ends.
        """
        if not self._lock.acquire(timeout=wait):
            return False
        try:
            with self._conns_lock:
                for conn in self._all_conns:
                    try:
                        conn.close()
                    except sqlite3.Error:
                        pass
                self._all_conns.clear()
            self._local = threading.local()
            return True
        finally:
            self._lock.release()

    # --- internals --------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection; reopened if .lorawb/ was deleted (or replaced) under us."""
        db = state.state_db_path(self.project.state_dir)
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        try:
            ino = os.stat(db).st_ino
        except OSError:
            ino = None
        if conn is not None and ino != getattr(self._local, "ino", None):
            conn.close()
            conn = None
            with self._lock:
                self._facts = None  # the DB we mirrored is gone
        if conn is None:
            conn = state.connect(self.project.state_dir)
            state.ensure_schema(conn, "image_index", _DDL)
            self._local.conn = conn
            self._local.ino = os.stat(db).st_ino
            with self._conns_lock:
                self._all_conns.append(conn)
        return conn

    def _area_meta(self, conn: sqlite3.Connection) -> dict[str, dict]:
        out = {}
        for area, root, scanned_at, orphans, problems in conn.execute(
            f"SELECT area, root, scanned_at, orphans, problems FROM {_AREAS}"
        ):
            out[area] = {
                "root": root,
                "scanned_at": scanned_at,
                "orphans": json.loads(orphans),
                "problems": [tuple(x) for x in json.loads(problems)],
            }
        return out

    def _load(self, conn: sqlite3.Connection, meta: dict[str, dict]) -> None:
        names = {a.name: a for a in self.areas}
        facts = {}
        for f in self._rows(conn):
            a = names.get(f.area)
            if a is not None and meta.get(a.name, {}).get("root") == str(a.root):
                facts[f.key] = f
        self._facts = facts
        self._stems = None
        self._orphans = {a: list(m["orphans"]) for a, m in meta.items() if a in names}
        self._problems = {a: list(m["problems"]) for a, m in meta.items() if a in names}
        self._opened = 0

    def _rows(self, conn: sqlite3.Connection) -> Iterable[ImageFacts]:
        cur = conn.cursor()
        cur.row_factory = None  # plain tuples: sqlite3.Row costs a third of a 10,000-row load
        for row in cur.execute(f"SELECT {', '.join(_STORED)} FROM {_TABLE}"):
            yield _facts_from_row(row)

    def _store(
        self,
        conn: sqlite3.Connection,
        known: dict[str, ImageFacts] | None,
        facts: dict[str, ImageFacts],
        delta: IndexDelta,
        orphans: dict[str, list[str]],
        problems: dict[str, list[tuple[str, str]]],
        *,
        full: bool,
    ) -> None:
        placeholders = ", ".join("?" for _ in _STORED)
        rows = [_row_from_facts(facts[k]) for k in {*delta.added, *delta.changed} if k in facts]
        now = time.time()
        with state.transaction(conn):
            if full:
                names = [a.name for a in self.areas]
                conn.execute(f"DELETE FROM {_TABLE} WHERE area NOT IN ({', '.join('?' for _ in names)})", names)
                stale = {k for k in (known or {}) if k not in facts}
                stored = {r[0] for r in conn.execute(f"SELECT key FROM {_TABLE}")}
                stale |= stored - set(facts)
                conn.executemany(f"DELETE FROM {_TABLE} WHERE key = ?", [(k,) for k in stale])
                rows += [_row_from_facts(facts[k]) for k in set(facts) - stored - {*delta.added, *delta.changed}]
            else:
                conn.executemany(f"DELETE FROM {_TABLE} WHERE key = ?", [(k,) for k in delta.removed])
            conn.executemany(f"INSERT OR REPLACE INTO {_TABLE} ({', '.join(_STORED)}) VALUES ({placeholders})", rows)
            conn.executemany(
                f"INSERT OR REPLACE INTO {_AREAS} (area, root, scanned_at, orphans, problems) VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        a.name,
                        str(a.root),
                        now,
                        json.dumps(orphans.get(a.name, []), ensure_ascii=False),
                        json.dumps(problems.get(a.name, []), ensure_ascii=False),
                    )
                    for a in self.areas
                ],
            )


def _diff(known: dict[str, ImageFacts], facts: dict[str, ImageFacts], delta: IndexDelta) -> None:
    for k, f in facts.items():
        old = known.get(k)
        if old is None:
            delta.added.append(k)
        elif old != f:
            delta.changed.append(k)
            if _caption_of(old) != _caption_of(f):
                delta.captions.add(k)
        if old is None:
            delta.captions.add(k)
    delta.removed = [k for k in known if k not in facts]


def _caption_of(f: ImageFacts) -> tuple:
    return (f.caption_rel, f.caption_text, f.caption_mtime_ns, f.caption_size)


def _images_beside(caption: str, listings: dict[str, dict[str, list[str]]] | None = None) -> list[str]:
    """The image files of the same stem in the caption's folder (kohya pairs a.png and a.jpg with a.txt).

    ``listings`` caches each folder's images by stem: a burst of 1,000 captions lists the folder once.
    """
    d, name = os.path.split(caption)
    stems = listings.get(d) if listings is not None else None
    if stems is None:
        stems = {}
        try:
            names = os.listdir(d)
        except OSError:
            names = []
        for n in names:
            if layout.is_image(n):
                stems.setdefault(os.path.splitext(n)[0], []).append(n)
        if listings is not None:
            listings[d] = stems
    return [os.path.join(d, n) for n in stems.get(os.path.splitext(name)[0], ())]


def _captions_of(image: str) -> list[str]:
    base = os.path.splitext(image)[0]
    return [base + ext for ext in layout.CAPTION_EXTS]


_PROBLEMS = _STORED.index("problems")
_REJECTED = _STORED.index("rejected")
_FIELD_ORDER = [_STORED.index(c) for c in _COLUMNS]


def _row_from_facts(f: ImageFacts) -> tuple:
    values = [getattr(f, c) for c in _STORED]
    values[_PROBLEMS] = json.dumps(f.problems, ensure_ascii=False) if f.problems else ""
    values[_REJECTED] = int(f.rejected)
    return tuple(values)


def _facts_from_row(row: sqlite3.Row | tuple) -> ImageFacts:
    values = list(row)
    raw = values[_PROBLEMS]
    values[_PROBLEMS] = json.loads(raw) if raw else []
    values[_REJECTED] = bool(values[_REJECTED])
    return ImageFacts(*[values[i] for i in _FIELD_ORDER])


def scan_folder(root: Path) -> ScanResult:
    """An image folder as the scanner sees it (rejects left out): through the project's index when
    ``root`` is a project's dataset folder (unchanged images are not opened again), else a plain scan.

    The trainer's dataset scan: the same reader and the same verdicts as the doctor and Triage.
    """
    root = Path(root)
    project = _project_of(root)
    if project is not None:
        index = ProjectIndex(project)
        try:
            return index.scan()
        except (sqlite3.Error, OSError):
            pass  # a read-only project or a broken .lorawb/: the folder itself still answers
        finally:
            index.close()
    return scan_dataset(root)


def _project_of(root: Path) -> Project | None:
    from lorawb.errors import LorawbError

    try:
        project = Project.load(root)
    except LorawbError:
        return None
    try:
        same = project.dataset_dir.resolve() == root.resolve()
    except OSError:
        return None
    return project if same else None
