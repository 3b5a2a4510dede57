"""The file watcher: changes other programs make to a project's folders, coalesced, settled, indexed.

A watchdog observer (Linux inotify; polling where inotify is unavailable or its watch
limit is reached) watches ``dataset/``, ``inbox/`` (recursively), ``runs/`` (new run
folders), ``matrices/`` (recursively: new matrices and cells) and ``lorawb.toml``.
Raw events go into a queue; one thread of ours drains it:

- **coalescing**: events are collected until the folders have been quiet for
  ``quiet_s`` (at most ``max_wait_s`` after the first one), so a burst of 1,000 new
  files becomes one index update and one batch handed to the app;
- **settling**: an image that is still being written (an open file growing, rsync, a
  generator) is held back until it is closed, renamed into place, or its size has
  stayed the same for ``settle_s``; a caption that vanished is given ``grace_s`` to
  come back, so an editor's save by rename (vim, emacs, VS Code: write a temp file,
  rename it over the caption) is one modification of that caption;
- **indexing**: the settled paths go to ``ProjectIndex.update`` (no rescan), one transaction;
- **own writes**: a change this process made itself (lorawb.core.ownwrites) still updates
  the index but is marked as such, so the app does not report its own saves back to itself;
- **lorawb.toml**: re-read and validated; an invalid edit comes with its error (file, line,
  key) and no new settings.

Each batch reaches ``on_batch`` from the watcher's thread; a UI hands it to its own thread
(``post_message`` / ``call_from_thread``). No Textual here.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import stat
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from lorawb.core import layout, ownwrites
from lorawb.core.index import IndexDelta, ProjectIndex
from lorawb.core.project import Project
from lorawb.errors import LorawbError

log = logging.getLogger(__name__)

# watchdog re-adds the watch of a folder created inside a watched tree when it meets it twice (its
# own scan and the folder's event) and warns on stderr each time, which would draw over the app's
# screen. The watch is right either way.
warnings.filterwarnings("ignore", message=r"Callback with id .* already exists for watch", category=RuntimeWarning)

QUIET_S = 0.05  # a batch closes after this long without events...
MAX_WAIT_S = 1.0  # ...or this long after its first event
SETTLE_S = 0.3  # an image not closed after writing counts as complete once its size held this long
OPEN_SETTLE_S = 2.0  # inotify saw it open for writing and no close: wait longer
GRACE_S = 0.25  # a caption that vanished may be an editor's rename-over save: wait for it to come back
POLL_S = 1.0  # the polling observer's interval
EVENTS = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]  # not opened/closed-without-write: lorawb's own reads must not wake the watcher


@dataclass
class ConfigChange:
    """lorawb.toml changed on disk: the project re-read from it, or why it could not be."""

    project: Project | None
    error: LorawbError | None = None


@dataclass
class WatchBatch:
    """One coalesced round of changes, already applied to the index."""

    delta: IndexDelta = field(default_factory=IndexDelta)
    outside: set[str] = field(default_factory=set)  # image keys changed by another program
    outside_captions: set[str] = field(default_factory=set)  # ... whose caption changed
    config: ConfigChange | None = None
    runs: set[str] = field(default_factory=set)  # run folder names under runs/ that appeared, changed or left
    matrices: set[str] = field(default_factory=set)  # matrix ids under matrices/ with changes
    events: int = 0  # raw file events coalesced into this batch
    first_event: float = 0.0  # time.monotonic() of the oldest event in it (for latency figures)
    status: str | None = None  # the watcher changed its way of watching (e.g. fell back to polling)
    error: str | None = None  # updating the index failed (the next batch tries again)

    def __bool__(self) -> bool:
        return bool(self.delta or self.config or self.runs or self.matrices or self.status is not None or self.error)

    @property
    def own_only(self) -> bool:
        """Every file change in it was made by this process."""
        return not self.outside and self.config is None and not self.runs and not self.matrices


@dataclass
class _Raw:
    t: float
    kind: str  # created | modified | deleted | moved | closed
    src: str
    dest: str
    is_dir: bool


@dataclass
class _Pending:
    """An image or caption path waiting to be complete."""

    first: float  # when it was first seen changing (latency is counted from here)
    since: float  # when it last changed
    stat: tuple[int, int] | None
    closed: bool = False  # written and closed (or renamed into place)
    open_write: bool = False  # inotify saw it being written
    gone: bool = False  # deleted / moved away when last seen


class _Handler(FileSystemEventHandler):
    def __init__(self, q: queue.Queue[_Raw]) -> None:
        self.q = q

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        self.q.put(_Raw(time.monotonic(), event.event_type, src, dest, event.is_directory))


def inotify_limit_hint(err: OSError | None) -> str:
    """What to tell a user whose inotify limits are too low (with the sysctl that raises them)."""
    which = "max_user_instances" if err is not None and err.errno == errno.EMFILE else "max_user_watches"
    now = ""
    try:
        now = Path(f"/proc/sys/fs/inotify/{which}").read_text().strip()
    except OSError:
        pass
    value = 1024 if which == "max_user_instances" else 524288
    current = f" (now {now})" if now else ""
    return f"raise the inotify limit{current}: sudo sysctl fs.inotify.{which}={value}"


class ProjectWatcher:
    """Watches one project for changes made by other programs; see the module docstring.

    ``start()`` and ``stop()`` from the owner's thread; ``on_batch`` is called from the
    watcher's own thread. ``mode`` is "inotify", "polling" or "off"; ``problem`` says why
    polling is used when it was not asked for.
    """

    def __init__(
        self,
        project: Project,
        index: ProjectIndex,
        on_batch: Callable[[WatchBatch], None],
        *,
        polling: bool = False,
        quiet_s: float = QUIET_S,
        max_wait_s: float = MAX_WAIT_S,
        settle_s: float = SETTLE_S,
        grace_s: float = GRACE_S,
        poll_s: float = POLL_S,
    ) -> None:
        self.project = project
        self.index = index
        self.on_batch = on_batch
        self.quiet_s, self.max_wait_s, self.settle_s, self.grace_s, self.poll_s = (
            quiet_s,
            max_wait_s,
            settle_s,
            grace_s,
            poll_s,
        )
        self.mode = "off"
        self.problem: str | None = None
        self._want_polling = polling
        self._q: queue.Queue[_Raw] = queue.Queue()
        self._handler = _Handler(self._q)
        self._observer: BaseObserver | None = None
        self._watched: set[str] = set()
        self._pending: dict[str, _Pending] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0  # batches delivered (for tests and benchmarks)
        self.cycles = 0  # rounds of the loop (tests wait on it instead of sleeping)

    # --- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        """Start watching (inotify, else polling); returns once the watches are in place."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._start_observer(polling=self._want_polling)
        self._thread = threading.Thread(target=self._run, name="lorawb-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and join every thread this watcher started."""
        self._stop.set()
        self._q.put(_Raw(time.monotonic(), "stop", "", "", False))  # wake the loop now, not at its next timeout
        obs, self._observer = self._observer, None
        if obs is not None:
            _stop_observer(obs, timeout)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.mode = "off"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start_observer(self, *, polling: bool) -> None:
        self._watched.clear()
        if not polling:
            try:
                from watchdog.observers.inotify import InotifyObserver

                obs: BaseObserver = InotifyObserver()
                self._schedule_all(obs)
                obs.start()
                self._observer, self.mode = obs, "inotify"
                return
            except (OSError, ImportError) as exc:
                try:
                    _stop_observer(obs, 1.0)  # type: ignore[possibly-undefined]
                except Exception:  # noqa: BLE001 - it may not have been created
                    pass
                self._watched.clear()
                reason = getattr(exc, "strerror", None) or str(exc)
                hint = inotify_limit_hint(exc) if isinstance(exc, OSError) else "inotify is not available here"
                self.problem = f"inotify unavailable ({reason}): watching by polling every {self.poll_s:g} s; {hint}"
                log.warning("%s", self.problem)
        # Polling walks the folders itself: it follows folder links only where a scan does
        # (``_poll_stat``), never into / or round a loop.
        obs = PollingObserverVFS(stat=self._poll_stat, listdir=os.scandir, polling_interval=self.poll_s)
        self._schedule_all(obs)
        obs.start()
        self._observer, self.mode = obs, "polling"

    def _poll_stat(self, path: str) -> os.stat_result:
        """``os.stat`` for the polling walk, but a folder link is seen as a link (not walked into) when
        a scan would not follow it (``layout.link_refusal``) or it leads back into a watched folder."""
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode):
            return st
        try:
            followed = os.stat(path)
        except OSError:
            return st  # a broken link
        if not stat.S_ISDIR(followed.st_mode):
            return followed  # a linked file: its changes count
        target = os.path.realpath(path)
        roots = [os.path.realpath(t) for t, recursive in self._targets() if recursive]
        inside = any(target == r or target.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
        if inside or layout.link_refusal(target, os.path.realpath(self.project.root)) is not None:
            return st
        return followed

    def _targets(self) -> list[tuple[Path, bool]]:
        p = self.project
        return [
            (p.root, False),  # lorawb.toml, and the folders below appearing
            *((area.root, True) for area in self.index.areas),  # dataset/, inbox/ (every image folder)
            (p.runs_dir, False),
            (p.matrices_dir, True),
        ]

    def _schedule_all(self, obs: BaseObserver) -> None:
        for path, recursive in self._targets():
            self._schedule(obs, path, recursive)

    def _schedule(self, obs: BaseObserver, path: Path, recursive: bool) -> None:
        key = os.fspath(path)
        if key in self._watched or not path.is_dir():
            return
        obs.schedule(self._handler, key, recursive=recursive, event_filter=EVENTS)
        self._watched.add(key)

    # --- the loop ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self.cycles += 1
            wait = 0.05 if self._pending else 0.25
            try:
                first = self._q.get(timeout=wait)
            except queue.Empty:
                self._check_observer()
                if self._pending:
                    self._deliver([])
                continue
            raw = [first]
            # Collect until quiet, or at most max_wait_s from now. Events that queued up while the
            # last batch was being indexed are all taken at once (never one batch per event).
            deadline = time.monotonic() + self.max_wait_s
            while not self._stop.is_set():
                try:
                    while True:
                        raw.append(self._q.get_nowait())
                except queue.Empty:
                    pass
                left = min(self.quiet_s, deadline - time.monotonic())
                if left <= 0:
                    break
                try:
                    raw.append(self._q.get(timeout=left))
                except queue.Empty:
                    break
            if self._stop.is_set():
                return
            self._deliver(raw)

    def _check_observer(self) -> None:
        obs = self._observer
        if obs is None or obs.is_alive() or self._stop.is_set():
            return
        # The inotify thread died (a watch limit hit when a new folder appeared): poll instead.
        _stop_observer(obs, 1.0)
        self.problem = f"inotify stopped: watching by polling every {self.poll_s:g} s; {inotify_limit_hint(None)}"
        self._start_observer(polling=True)
        self._send(WatchBatch(status=self.problem))

    def _deliver(self, raw: list[_Raw]) -> None:
        try:
            batch = self._collect(raw)
        except Exception as exc:  # noqa: BLE001 - a watcher that dies silently is worse than one that reports
            log.exception("file watcher")
            batch = WatchBatch(error=f"file watcher: {exc}")
        if batch:
            self._send(batch)

    def _send(self, batch: WatchBatch) -> None:
        self.batches += 1
        try:
            self.on_batch(batch)
        except Exception:  # noqa: BLE001 - the receiver's bug must not stop the watching
            log.exception("file watcher callback")

    def _collect(self, raw: list[_Raw]) -> WatchBatch:
        batch = WatchBatch(events=len(raw), first_event=min((r.t for r in raw), default=time.monotonic()))
        p = self.project
        config = os.fspath(p.config_path)
        runs, matrices = os.fspath(p.runs_dir), os.fspath(p.matrices_dir)
        now = time.monotonic()
        ready: set[str] = set()
        config_hit = False
        for r in raw:
            for path in (r.src, r.dest):
                if not path:
                    continue
                if path == config:
                    config_hit = True
                    continue
                if r.is_dir and (r.kind == "created" or (r.kind == "moved" and path == r.dest)):
                    self._maybe_watch(path)
                name = _first_part(path, runs)
                if name is not None:
                    batch.runs.add(name)
                    continue
                name = _first_part(path, matrices)
                if name is not None:
                    batch.matrices.add(name)
                    continue
                if self.index.area_of(path) is None or os.path.basename(path).startswith("."):
                    continue  # outside the image folders; hidden files (an atomic write's temp file)
                if r.is_dir:
                    ready.add(path)
                    continue
                if not (layout.is_image(path) or os.path.splitext(path)[1].lower() in layout.CAPTION_EXTS):
                    continue  # an editor's backup or swap file, notes...
                self._note(path, r, gone=(r.kind == "deleted" or (r.kind == "moved" and path == r.src)), now=now)
        for path, pend in list(self._pending.items()):
            if self._settled(path, pend, now):
                ready.add(path)
                batch.first_event = min(batch.first_event, pend.first)
                del self._pending[path]
        if ready:
            delta = self.index.update(ready)
            batch.delta = delta
            self._classify(batch, ready)
        if config_hit:
            batch.config = self._config_change()
        return batch

    def _note(self, path: str, r: _Raw, *, gone: bool, now: float) -> None:
        pend = self._pending.get(path)
        if pend is None:
            pend = self._pending[path] = _Pending(first=r.t, since=now, stat=None)
        pend.since = r.t
        pend.gone = gone
        if gone:
            pend.closed, pend.open_write = False, False
        elif r.kind == "closed" or (r.kind == "moved" and path == r.dest):
            pend.closed, pend.open_write = True, False
        else:  # created / modified: being written (a created-only file is a link or an empty file)
            pend.closed = False
            pend.open_write = pend.open_write or (self.mode == "inotify" and r.kind == "modified")
        pend.stat = _stat(path)

    def _settled(self, path: str, pend: _Pending, now: float) -> bool:
        stat = _stat(path)
        is_caption = os.path.splitext(path)[1].lower() in layout.CAPTION_EXTS
        if stat is None:
            # Gone. A caption may be coming back (an editor's save by rename): wait a moment for it.
            return not is_caption or now - pend.since >= self.grace_s
        if is_caption or not layout.is_image(path):
            return True
        if stat != pend.stat:  # still changing
            pend.stat, pend.since, pend.closed = stat, now, False
            return False
        if pend.closed:
            return True
        wait = OPEN_SETTLE_S if pend.open_write else self.settle_s
        return now - pend.since >= wait

    def _maybe_watch(self, path: str) -> None:
        """A watched folder that did not exist at start (inbox/ created later): watch it now."""
        obs = self._observer
        if obs is None:
            return
        for target, recursive in self._targets():
            if os.fspath(target) == path:
                try:
                    self._schedule(obs, target, recursive)
                except OSError as exc:
                    log.warning("cannot watch %s: %s", path, exc)

    def _classify(self, batch: WatchBatch, ready: set[str]) -> None:
        """Split the index's changes into this process's own and other programs'."""
        delta = batch.delta
        own = {p for p in ready if ownwrites.is_own(p) or ownwrites.busy(p)}
        root = self.project.root
        touched: dict[str, list[str]] = {}
        for p in ready:
            base = os.path.splitext(p)[0]
            touched.setdefault(base, []).append(p)
        for key in delta.keys:
            base = os.path.splitext(os.path.normpath(os.path.join(root, key)))[0]
            paths = touched.get(base, [])
            if not paths or any(p not in own for p in paths):
                batch.outside.add(key)
                if key in delta.captions:
                    batch.outside_captions.add(key)

    def _config_change(self) -> ConfigChange | None:
        path = self.project.config_path
        if ownwrites.is_own(path):
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None
        if text is not None and text == self.project.config_text:
            return None  # touched or rewritten with the same settings
        try:
            return ConfigChange(Project.load(self.project.root))
        except LorawbError as exc:
            return ConfigChange(None, exc)


def _first_part(path: str, base: str) -> str | None:
    if path.startswith(base) and path[len(base) : len(base) + 1] == os.sep:
        name = path[len(base) + 1 :].split(os.sep, 1)[0]
        return None if name.startswith(".") else name
    return None


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _stop_observer(obs: BaseObserver, timeout: float) -> None:
    try:
        obs.stop()
        if obs.is_alive():
            obs.join(timeout)
    except RuntimeError:
        pass  # never started
    for emitter in list(getattr(obs, "emitters", ())):
        try:
            emitter.stop()
            emitter.join(timeout)
        except RuntimeError:
            pass
