"""Following a run: the model behind the Train tab's monitor, its run list and `lorawb watch`.

A :class:`RunMonitor` ingests one run folder incrementally: ``events.jsonl`` through
:class:`~lorawb.train.events.EventTail` (only the bytes appended since the last poll, at
most ``max_bytes`` per poll, a half-written last line left for later) and ``train.log``
through :class:`LogTail` (the same, keeping only the last lines). The events are folded by
lorawb.train.runstate's :class:`RunState`, the one fold ``lorawb runs`` uses too (so the list,
``lorawb watch`` and the Train tab never disagree); this adds what a monitor shows on top: the
loss chart (raw and smoothed, at a strength that can change at any time), progress and ETA,
sample images grouped by step with their contact sheet, checkpoints with their size and time,
and the malformed lines of events.jsonl it skipped, named.

Threading: a follower thread calls :meth:`RunMonitor.poll`; a UI renders from
:meth:`RunMonitor.snapshot`, an immutable :class:`MonitorView` whose series are already
downsampled for a chart, so the UI never walks 100,000 points. Backpressure works like
toolong's watcher: a poll reads a bounded chunk, ``pending`` says more is waiting, and the
follower decides when to hand a fresh snapshot to the UI (not once per event).

:class:`RunBoard` follows every run of a project for the run list. No UI code here.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorawb.train import runstate
from lorawb.train.detached import pid_alive
from lorawb.train.events import EventTail, event_problem
from lorawb.train.runfolder import RunFolder, list_runs
from lorawb.train.runstate import DEFAULT_SMOOTHING, FINAL_STATES, RunState, SampleImage, Series

ALIVE_CHECK_EVERY = 2.0  # seconds between run.lock probes of one run


# --------------------------------------------------------------------------- log tail
class LogTail:
    """The last ``keep`` lines of a growing text file, read by byte offset.

    On first read of a big file only its last ``keep * 400`` bytes are read: a log tail
    never needs the first hours of a run.
    """

    def __init__(self, path: Path, keep: int = 500, max_bytes: int = 1 << 20) -> None:
        self.path = Path(path)
        self.keep = keep
        self.max_bytes = max_bytes
        self.lines: deque[str] = deque(maxlen=keep)
        self.total = 0  # lines ever appended to ``lines``: a UI shows ``total - shown`` new ones
        self.offset = 0
        self._partial = b""
        self._ino: int | None = None
        self._first = True

    def poll(self) -> int:
        """Read what was appended; returns the number of new complete lines."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return 0
        if st.st_size < self.offset or (self._ino is not None and st.st_ino != self._ino):
            self.offset, self._partial, self._first = 0, b"", True
            self.lines.clear()
            self.total = 0
        self._ino = st.st_ino
        if st.st_size == self.offset:
            return 0
        skip_partial_first = False
        if self._first:
            self._first = False
            start = max(0, st.st_size - self.keep * 400)
            if start > 0:
                self.offset = start
                skip_partial_first = True
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(self.max_bytes)
        self.offset += len(chunk)
        data = self._partial + chunk
        end = data.rfind(b"\n")
        if end < 0:
            self._partial = data
            return 0
        self._partial = data[end + 1 :]
        raw = data[:end].split(b"\n")
        if skip_partial_first:
            raw = raw[1:]
        for line in raw:
            # \r: progress bars redraw a line in place; the last redraw is what a person saw.
            text = line.decode("utf-8", errors="replace").rstrip("\r").rsplit("\r", 1)[-1]
            self.lines.append(text)
        self.total += len(raw)
        return len(raw)


# --------------------------------------------------------------------------- views
@dataclass(frozen=True)
class SampleStep:
    step: int
    images: tuple[SampleImage, ...]
    sheet: Path | None = None  # the step's contact sheet (samples/<step>-sheet.png), when written


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    path: Path
    size: int | None  # bytes; None when the file is gone
    time: float | None  # when it was written (event time, else file mtime)

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    mem_used_gb: float
    mem_total_gb: float
    util: int  # percent


@dataclass(frozen=True)
class MonitorView:
    """Everything a monitor shows, frozen at one moment; safe to hand to another thread."""

    run_id: str
    path: Path
    state: str
    display_state: str
    alive: bool
    error: str | None
    step: int
    max_steps: int | None
    epoch: int
    elapsed: float
    eta: float | None
    loss: float | None
    loss_smooth: float | None
    val_loss: float | None
    lr: float | None
    it_s: float | None
    mem_gb: float | None
    gpu_util: float | None
    smoothing: float
    events: int
    bad_lines: int
    loss_xy: tuple[tuple[float, ...], tuple[float, ...]]
    smooth_xy: tuple[tuple[float, ...], tuple[float, ...]]
    val_xy: tuple[tuple[float, ...], tuple[float, ...]]
    lr_xy: tuple[tuple[float, ...], tuple[float, ...]]
    samples: tuple[SampleStep, ...]
    checkpoints: tuple[CheckpointInfo, ...]
    log: tuple[str, ...]
    recent: tuple[tuple[int, float, float], ...] = ()  # the last raw (step, loss, smoothed) points
    log_total: int = 0  # lines the log tail has read so far (``log`` holds the last of them)
    skipped: tuple[tuple[str, str], ...] = ()  # (image, reason): dataset images the run could not use
    resumable_step: int | None = None  # the last checkpoint saved with its resume state
    problems: tuple[str, ...] = ()  # malformed lines of events.jsonl, skipped (named)

    @property
    def progress(self) -> float | None:
        if not self.max_steps:
            return None
        return min(1.0, self.step / self.max_steps)

    @property
    def s_it(self) -> float | None:
        return 1.0 / self.it_s if self.it_s else None

    @property
    def ended(self) -> bool:
        return runstate.has_ended(self.state, self.alive)


@dataclass(frozen=True)
class RunRow:
    """One line of the run list."""

    run_id: str
    state: str
    display_state: str
    alive: bool
    step: int
    max_steps: int | None
    loss: float | None
    loss_smooth: float | None
    it_s: float | None
    elapsed: float
    eta: float | None
    started: float | None


# --------------------------------------------------------------------------- monitor
class RunMonitor:
    """The incremental, thread-safe model of one run folder (see the module docstring): the run's
    events folded by lorawb.train.runstate's RunState (the one fold ``lorawb runs`` uses too)."""

    def __init__(
        self,
        run: RunFolder | Path,
        *,
        smoothing: float = DEFAULT_SMOOTHING,
        max_bytes: int = 1 << 20,
        log_lines: int = 500,
    ) -> None:
        self.run = run if isinstance(run, RunFolder) else RunFolder(Path(run))
        self.lock = threading.RLock()
        self.fold = RunState(self.run.path, smoothing)
        self._tail = EventTail(self.run.events, max_bytes=max_bytes, check=event_problem)
        self._restarts = 0
        self.log = LogTail(self.run.log, keep=log_lines)
        self.alive = False
        self._alive_checked = 0.0
        self._config_max_steps: int | None | bool = False  # False: not read yet
        self._sizes: dict[Path, tuple[int | None, float | None]] = {}  # checkpoint -> (size, mtime) when first seen

    # --- ingest ---------------------------------------------------------
    @property
    def pending(self) -> bool:
        """Complete lines are waiting that the last poll left for later (backpressure)."""
        return self._tail.more

    @property
    def bad_lines(self) -> int:
        return self._tail.bad_lines

    @property
    def smoothing(self) -> float:
        return self.fold.smoothing

    @property
    def loss_smooth(self) -> Series:
        return self.fold.loss_smooth

    def poll(self, *, check_alive: bool = True) -> int:
        """Ingest what was appended since the last poll; returns the number of new events.

        Parsing happens outside the lock so a UI snapshot never waits on JSON decoding.
        """
        events = self._tail.poll()
        restarted = self._tail.restarts != self._restarts
        self.log.poll()
        with self.lock:
            if restarted:
                self._restarts = self._tail.restarts
                self.fold.reset()
            for ev in events:
                self.fold.apply(ev)
            now = time.monotonic()
            if check_alive and (events or now - self._alive_checked >= ALIVE_CHECK_EVERY or not self._alive_checked):
                self._alive_checked = now
                self.alive = self._probe_alive()
        return len(events)

    def _probe_alive(self) -> bool:
        if self.run.is_alive():
            return True
        # Between launch and the trainer taking run.lock, the pid file is the only sign of life.
        if self.fold.state in ("unknown", "starting"):
            pid = self.run.pid()
            if pid is not None:
                return pid_alive(pid)
        return False

    # --- settings -------------------------------------------------------
    def set_smoothing(self, weight: float) -> None:
        """Change the EMA strength (0 = raw .. 0.999); recomputes the smoothed curve."""
        with self.lock:
            self.fold.set_smoothing(weight)

    # --- derived --------------------------------------------------------
    def _total_steps(self) -> int | None:
        if self.fold.max_steps:
            return self.fold.max_steps
        if self._config_max_steps is False:
            self._config_max_steps = runstate.config_max_steps(self.run.config)
        return self._config_max_steps or None

    @property
    def display_state(self) -> str:
        return runstate.display_state(self.fold.state, self.alive)

    @property
    def ended(self) -> bool:
        return runstate.has_ended(self.fold.state, self.alive)

    def _elapsed(self) -> float:
        f = self.fold
        return runstate.elapsed(f.started, f.updated, f.paused, self.alive and f.state not in FINAL_STATES)

    def _checkpoint(self, path: Path, ev: dict[str, Any]) -> CheckpointInfo:
        if path not in self._sizes:
            try:
                st = path.stat()
                self._sizes[path] = (st.st_size, st.st_mtime)
            except OSError:
                self._sizes[path] = (None, None)
        size, mtime = self._sizes[path]
        when = ev.get("time")
        t = float(when) if isinstance(when, (int, float)) else mtime
        return CheckpointInfo(ev.get("step") if isinstance(ev.get("step"), int) else 0, path, size, t)

    def row(self) -> RunRow:
        with self.lock:
            f, total = self.fold, self._total_steps()
            return RunRow(
                run_id=self.run.id,
                state=f.state,
                display_state=self.display_state,
                alive=self.alive,
                step=f.step,
                max_steps=total,
                loss=f.loss.last,
                loss_smooth=f.loss_smooth.last,
                it_s=f.it_s,
                elapsed=self._elapsed(),
                eta=runstate.eta(total, f.step, f.it_s, f.state, self.alive),
                started=f.started,
            )

    def snapshot(self, points: int = 400, log_lines: int = 200, recent: int = 8) -> MonitorView:
        """An immutable view; series downsampled to at most ``points`` points each."""
        with self.lock:
            f, total = self.fold, self._total_steps()
            samples = tuple(
                SampleStep(step, tuple(sorted(imgs, key=lambda im: im.index)), f.sheets.get(step))
                for step, imgs in sorted(f.samples.items())
            )
            log = tuple(self.log.lines)[-log_lines:] if log_lines else ()
            return MonitorView(
                run_id=self.run.id,
                path=self.run.path,
                **f.figures(),
                display_state=self.display_state,
                alive=self.alive,
                error=f.error_text,
                max_steps=total,
                elapsed=self._elapsed(),
                eta=runstate.eta(total, f.step, f.it_s, f.state, self.alive),
                val_loss=f.val_loss.last,
                mem_gb=f.mem_gb,
                gpu_util=f.gpu_util,
                smoothing=f.smoothing,
                events=f.events,
                bad_lines=self.bad_lines,
                loss_xy=f.loss.downsample(points),
                smooth_xy=f.loss_smooth.downsample(points),
                val_xy=f.val_loss.downsample(points),
                lr_xy=f.lr.downsample(points),
                samples=samples,
                checkpoints=tuple(
                    sorted((self._checkpoint(p, ev) for p, ev in f.checkpoints.items()), key=lambda c: (c.step, c.name))
                ),
                log=log,
                log_total=self.log.total,
                skipped=tuple(f.skipped),
                problems=runstate.read_problems(self._tail, self.ended),
                recent=tuple(
                    (int(x), y, sm)
                    for x, y, sm in zip(
                        f.loss.xs[-recent:], f.loss.ys[-recent:], f.loss_smooth.ys[-recent:], strict=True
                    )
                )
                if recent
                else (),
            )

    def catch_up(self, *, budget_s: float | None = None) -> int:
        """Poll until nothing is pending (or ``budget_s`` runs out): a whole file, capped chunk by chunk."""
        start, total = time.perf_counter(), 0
        while True:
            total += self.poll(check_alive=False)
            if not self.pending or (budget_s is not None and time.perf_counter() - start > budget_s):
                break
        with self.lock:
            self._alive_checked = time.monotonic()
            self.alive = self._probe_alive()
        return total


# --------------------------------------------------------------------------- all runs
class RunBoard:
    """Every run of a project, each followed by its own RunMonitor (the run list)."""

    def __init__(self, runs_dir: Path, **monitor_kwargs: Any) -> None:
        self.runs_dir = Path(runs_dir)
        self._kwargs = monitor_kwargs
        self.lock = threading.Lock()
        self._monitors: dict[str, RunMonitor] = {}

    def monitor(self, run_id: str) -> RunMonitor | None:
        with self.lock:
            return self._monitors.get(run_id)

    @property
    def monitors(self) -> list[RunMonitor]:
        with self.lock:
            return list(self._monitors.values())

    @property
    def pending(self) -> bool:
        return any(m.pending for m in self.monitors)

    def discover(self) -> bool:
        """Pick up new run folders and forget deleted ones; True when the set changed."""
        found = {r.id: r for r in list_runs(self.runs_dir)}
        with self.lock:
            known = set(self._monitors)
            for rid in known - set(found):
                del self._monitors[rid]
            for rid in set(found) - known:
                self._monitors[rid] = RunMonitor(found[rid], **self._kwargs)
            return known != set(found)

    def set_smoothing(self, weight: float) -> None:
        """One EMA strength for every run, so their smoothed losses compare."""
        self._kwargs["smoothing"] = weight
        for m in self.monitors:
            m.set_smoothing(weight)

    def poll(self) -> int:
        """Poll every run once (one bounded chunk each); returns the number of new events."""
        return sum(m.poll() for m in self.monitors)

    def rows(self) -> list[RunRow]:
        """Newest first: the run a person just started is on top."""
        return sorted((m.row() for m in self.monitors), key=lambda r: r.run_id, reverse=True)


# --------------------------------------------------------------------------- GPU
_nvml_state: dict[str, Any] = {}


def gpu_stats() -> list[GpuInfo] | None:
    """Memory and utilisation of this machine's NVIDIA GPUs, or None without one (or without pynvml)."""
    if _nvml_state.get("failed"):
        return None
    try:
        if "nvml" not in _nvml_state:
            import pynvml  # nvidia-ml-py, optional

            pynvml.nvmlInit()
            _nvml_state["nvml"] = pynvml
        nvml = _nvml_state["nvml"]
        out = []
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            util = nvml.nvmlDeviceGetUtilizationRates(h)
            name = nvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else str(name)
            out.append(GpuInfo(i, name, mem.used / 2**30, mem.total / 2**30, int(util.gpu)))
        return out or None
    except Exception:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded...: no GPU figures, not an error
        _nvml_state["failed"] = True
        return None


# --------------------------------------------------------------------------- helpers
def format_duration(seconds: float | None) -> str:
    """'1:02:03', '4:05', or '-' (for ETAs and elapsed times)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_size(n: int | None) -> str:
    if n is None:
        return "missing"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover
