"""Near-duplicate detection: perceptual hashes, cached in the state DB, grouped by Hamming distance.

The hash is imagehash's pHash (64 bits, DCT of a 32x32 greyscale), taken after
EXIF orientation on the image reduced to at most 256 px (JPEGs are decoded at
reduced scale, so hashing a 24-megapixel photo costs a fraction of a full decode).
Hashes are cached in ``dedupe_hashes`` keyed by path + file size + mtime; triage
moves carry the row along, so rejecting an image costs no rehash.

Grouping finds every pair within ``threshold`` bits without comparing all pairs:
for small thresholds (the useful range) by multi-index hashing — split the 64
bits into threshold+1 chunks; two hashes within the threshold agree exactly on at
least one chunk (pigeonhole), so only hashes sharing a chunk value are compared —
and by vectorised numpy comparison for wide thresholds (where chunks of a
few bits prune nothing and most pairs match anyway). Pairs are joined into groups (connected
components), so a chain of small edits ends up in one group.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageOps

from lorawb.core.dataset import SAFE_FORMATS
from lorawb.core.project import Project
from lorawb.core.state import connect, ensure_schema
from lorawb.core.triage import DATASET, REJECT, Triage, TriageItem

HASH_BITS = 64
ALGO = "phash8/r256/exif"  # how the hash is made: change it and old cache rows are recomputed
_REDUCE_TO = 256
MIH_MAX_THRESHOLD = 7  # above this, chunks get narrow and prune little: vectorised block comparison is faster

SCHEMA = """
CREATE TABLE IF NOT EXISTS dedupe_hashes (
    rel TEXT PRIMARY KEY,      -- path relative to the project root
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    algo TEXT NOT NULL,
    hash TEXT,                 -- 16 hex digits; NULL when the image could not be read
    error TEXT
);
"""


def image_hash(path: Path) -> int:
    """The 64-bit perceptual hash of an image file. Raises on unreadable images."""
    with Image.open(path, formats=SAFE_FORMATS) as im:
        im.draft("RGB", (_REDUCE_TO, _REDUCE_TO))  # JPEG: DCT-domain downscale, much less to decode
        im = ImageOps.exif_transpose(im)
        if max(im.size) > _REDUCE_TO:
            im.thumbnail((_REDUCE_TO, _REDUCE_TO), Image.Resampling.BILINEAR)
        return int(str(imagehash.phash(im)), 16)


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# --------------------------------------------------------------------------- cache


def compute_hashes(
    project: Project,
    rels: Iterable[str],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict[str, int], dict[str, str]]:
    """Hashes of the given images (project-relative paths): (hashes, errors by path).

    Cached rows are reused when size and mtime match; the rest are computed on every core this
    process may use (a process pool; threads for a few images) and written back.
    """
    conn = connect(project.state_dir)
    try:
        ensure_schema(conn, "dedupe", SCHEMA)
        cached = {r["rel"]: r for r in conn.execute("SELECT * FROM dedupe_hashes WHERE algo=?", (ALGO,))}
        hashes: dict[str, int] = {}
        errors: dict[str, str] = {}
        todo: list[tuple[str, int, int]] = []
        for rel in rels:
            try:
                st = (project.root / rel).stat()
            except OSError as exc:
                errors[rel] = f"cannot read: {exc.strerror or exc}"
                continue
            row = cached.get(rel)
            if row is not None and row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns:
                if row["hash"] is not None:
                    hashes[rel] = int(row["hash"], 16)
                else:
                    errors[rel] = row["error"] or "unreadable"
            else:
                todo.append((rel, st.st_size, st.st_mtime_ns))
        total, done = len(todo), 0
        if progress:
            progress(0, total)
        n_workers = workers or int(os.environ.get("LORAWB_THREADS", "0") or 0) or allowed_cores()
        batch: list[tuple] = []
        for rel, size, mtime, h, err in _hash_all(project.root, todo, n_workers, should_stop):
            done += 1
            if err == "stopped":
                continue
            if h is None:
                errors[rel] = err or "unreadable"
            else:
                hashes[rel] = h
            batch.append((rel, size, mtime, ALGO, None if h is None else f"{h:016x}", err))
            if len(batch) >= 200:
                _write(conn, batch)
            if progress and (done % 25 == 0 or done == total):
                progress(done, total)
        _write(conn, batch)
        return hashes, errors
    finally:
        conn.close()


PROCESS_MIN = 64  # fewer images than this are hashed by threads in this process (starting processes costs more)


def allowed_cores() -> int:
    """The cores this process may run on (its CPU affinity; all of them where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _hash_one(root: Path, job: tuple[str, int, int]) -> tuple[str, int, int, int | None, str | None]:
    rel, size, mtime = job
    try:
        return rel, size, mtime, image_hash(root / rel), None
    except Image.DecompressionBombError:
        return rel, size, mtime, None, "image too large (decompression bomb guard)"
    except Exception as exc:  # noqa: BLE001 - corrupt / truncated / not an image: reported, never raised
        return rel, size, mtime, None, f"unreadable: {exc}"


def _lower_priority() -> None:
    """In each hashing process: yield the cores to an app's event loop when both want them."""
    try:
        os.nice(5)
    except (AttributeError, OSError):
        pass


def _hash_all(
    root: Path, todo: list[tuple[str, int, int]], workers: int, should_stop: Callable[[], bool] | None
) -> Iterable[tuple[str, int, int, int | None, str | None]]:
    """Hash ``todo`` on ``workers`` cores: a process pool for many images (decoding and the DCT hold
    the GIL for much of their time, so threads would share one core), threads for a few."""
    if workers <= 1 or len(todo) < 2:
        for job in todo:
            if should_stop and should_stop():
                return
            yield _hash_one(root, job)
        return
    if len(todo) < PROCESS_MIN:

        def one(job: tuple[str, int, int]) -> tuple[str, int, int, int | None, str | None]:
            if should_stop and should_stop():
                return job[0], job[1], job[2], None, "stopped"
            return _hash_one(root, job)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(one, todo)
        return
    # forkserver/spawn, not fork: the caller may be a threaded app (a forked child could inherit a held lock).
    ctx = multiprocessing.get_context(
        "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    )
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_lower_priority)
    try:
        chunk = max(1, min(32, len(todo) // (workers * 8)))
        for out in pool.map(_hash_one, [root] * len(todo), todo, chunksize=chunk):
            if should_stop and should_stop():
                return  # the rest are cancelled below; what was hashed so far is kept
            yield out
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write(conn: sqlite3.Connection, batch: list[tuple]) -> None:
    if batch:
        with conn:
            conn.executemany("INSERT OR REPLACE INTO dedupe_hashes VALUES (?,?,?,?,?,?)", batch)
        batch.clear()


# --------------------------------------------------------------------------- grouping


def _chunks(threshold: int, bits: int = HASH_BITS) -> list[tuple[int, int]]:
    """threshold+1 (shift, mask) pairs that tile ``bits`` as evenly as possible."""
    n = threshold + 1
    out, start = [], 0
    for i in range(n):
        width = bits // n + (1 if i < bits % n else 0)
        out.append((start, (1 << width) - 1))
        start += width
    return out


def close_pairs(values: list[int], threshold: int) -> Iterable[tuple[int, int]]:
    """Index pairs (i, j), i < j, of distinct hashes within ``threshold`` bits."""
    if threshold < 0 or len(values) < 2:
        return
    if threshold <= MIH_MAX_THRESHOLD:
        seen: set[tuple[int, int]] = set()
        for shift, mask in _chunks(threshold):
            buckets: dict[int, list[int]] = defaultdict(list)
            for i, v in enumerate(values):
                buckets[(v >> shift) & mask].append(i)
            for members in buckets.values():
                for a in range(len(members)):
                    va = values[members[a]]
                    for b in range(a + 1, len(members)):
                        i, j = members[a], members[b]
                        if (i, j) not in seen and (va ^ values[j]).bit_count() <= threshold:
                            seen.add((i, j))
                            yield i, j
        return
    # Wide thresholds: chunks would be a few bits wide and prune nothing; compare in numpy blocks instead.
    arr = np.array(values, dtype=np.uint64)
    for i in range(len(values) - 1):
        d = _popcount(arr[i + 1 :] ^ arr[i])
        for j in np.nonzero(d <= threshold)[0]:
            yield i, i + 1 + int(j)


_BYTE_BITS = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    return _BYTE_BITS[x.view(np.uint8)].reshape(-1, 8).sum(axis=1)


def group_hashes(hashes: Mapping[str, int], threshold: int) -> list[list[str]]:
    """Groups (2+ images) whose hashes chain together within ``threshold`` bits; sorted, stable."""
    by_value: dict[int, list[str]] = defaultdict(list)
    for rel, h in hashes.items():
        by_value[h].append(rel)
    values = sorted(by_value)  # identical hashes (exact copies) collapse to one value first
    parent = list(range(len(values)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in close_pairs(values, threshold):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    comps: dict[int, list[str]] = defaultdict(list)
    for i, v in enumerate(values):
        comps[find(i)].extend(by_value[v])
    groups = [sorted(m) for m in comps.values() if len(m) > 1]
    return sorted(groups, key=lambda g: g[0])


# --------------------------------------------------------------------------- project-level


@dataclass
class DupMember:
    rel: str
    hash: int
    distance: int  # to the group's first member (the suggested keeper)
    width: int = 0
    height: int = 0
    size_bytes: int = 0

    def to_json(self) -> dict:
        return {
            "path": self.rel,
            "distance": self.distance,
            "hash": f"{self.hash:016x}",
            "width": self.width,
            "height": self.height,
            "size_bytes": self.size_bytes,
        }


@dataclass
class DupGroup:
    """Near-duplicates; members[0] is the suggested one to keep (most pixels, then largest file)."""

    members: list[DupMember]

    @property
    def rels(self) -> list[str]:
        return [m.rel for m in self.members]

    @property
    def keeper(self) -> str:
        return self.members[0].rel


@dataclass
class DedupeResult:
    threshold: int
    groups: list[DupGroup]
    hashed: int
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def dup_rels(self) -> set[str]:
        return {m.rel for g in self.groups for m in g.members}

    def group_of(self, rel: str) -> DupGroup | None:
        for g in self.groups:
            if rel in g.rels:
                return g
        return None

    def to_json(self) -> dict:
        return {
            "threshold": self.threshold,
            "hashed": self.hashed,
            "groups": [[m.to_json() for m in g.members] for g in self.groups],
            "unreadable": [{"path": k, "error": v} for k, v in sorted(self.errors.items())],
        }


def find_duplicates(
    project: Project,
    *,
    threshold: int | None = None,
    include_inbox: bool = True,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int | None = None,
    items: Sequence[TriageItem] | None = None,
) -> DedupeResult:
    """Near-duplicate groups among the dataset's images (not rejected) and, by default, the inbox.

    ``items`` (from ``Triage.items()``) saves a rescan when the caller has them.
    """
    threshold = project.config.triage.dup_threshold if threshold is None else threshold
    if items is None:
        t = Triage(project)
        try:
            items = t.items()
        finally:
            t.close()
    items = [i for i in items if i.state != REJECT and (include_inbox or i.area == DATASET)]
    facts = {i.rel: i for i in items}
    hashes, errors = compute_hashes(
        project, [i.rel for i in items if i.error is None], progress=progress, should_stop=should_stop, workers=workers
    )
    for i in items:
        if i.error is not None:
            errors[i.rel] = i.error
    groups: list[DupGroup] = []
    for rels in group_hashes(hashes, threshold):
        rels.sort(key=lambda r: (-(facts[r].width * facts[r].height), -facts[r].size_bytes, r))
        first = hashes[rels[0]]
        groups.append(
            DupGroup(
                [
                    DupMember(
                        r,
                        hashes[r],
                        distance(first, hashes[r]),
                        facts[r].width,
                        facts[r].height,
                        facts[r].size_bytes,
                    )
                    for r in rels
                ]
            )
        )
    return DedupeResult(threshold=threshold, groups=groups, hashed=len(hashes), errors=errors)
