"""Following a run: the model behind the Train tab's monitor, its run list and `lorawb watch`.

A :class:`RunMonitor` ingests one run folder incrementally: ``events.jsonl`` through
:class:`~lorawb.train.events.EventTail` (only the bytes appended since the last poll, at
most ``max_bytes`` per poll, a half-written last line left for later) and ``train.log``
through :class:`LogTail` (the same, keeping only the last lines). It keeps what a monitor
shows: the loss (raw and an exponential moving average whose strength can change at any
time), validation loss, learning rate, speed, GPU memory, progress and ETA, sample images
grouped by step and checkpoints with their size and time.

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
from array import array
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lorawb.train.detached import pid_alive
from lorawb.train.events import EventTail
from lorawb.train.runfolder import RunFolder, list_runs

FINAL_STATES = ("finished", "stopped", "failed")
ALIVE_CHECK_EVERY = 2.0  # seconds between run.lock probes of one run
DEFAULT_SMOOTHING = 0.9


# --------------------------------------------------------------------------- series
class Series:
    """(x, y) points in compact arrays: 100,000 steps cost 1.6 MB, not a list of dicts."""

    __slots__ = ("xs", "ys")

    def __init__(self) -> None:
        self.xs = array("d")
        self.ys = array("d")

    def __len__(self) -> int:
        return len(self.xs)

    def append(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)

    @property
    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None

    @property
    def last_x(self) -> float | None:
        return self.xs[-1] if self.xs else None

    def rewind(self, x: float) -> int:
        """Drop the points at ``x`` and after (a resumed run logs those steps again)."""
        n = len(self.xs)
        while n and self.xs[n - 1] >= x:
            n -= 1
        dropped = len(self.xs) - n
        if dropped:
            del self.xs[n:]
            del self.ys[n:]
        return dropped

    def downsample(self, points: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """At most ``points`` points: means over equal runs of consecutive points.

        The x of a bucket is its last x, so the newest point is always drawn where it is.
        """
        n = len(self.xs)
        if n <= points or points < 2:
            return tuple(self.xs), tuple(self.ys)
        k = math.ceil(n / points)
        xs = np.array(self.xs, dtype=np.float64)  # a copy: a numpy view would pin the array's buffer
        ys = np.array(self.ys, dtype=np.float64)
        m = (n // k) * k
        bx = xs[k - 1 : m : k]
        by = ys[:m].reshape(-1, k).mean(axis=1)
        if m < n:
            bx = np.append(bx, xs[-1])
            by = np.append(by, ys[m:].mean())
        return tuple(bx.tolist()), tuple(by.tolist())


class Ema:
    """Debiased exponential moving average (TensorBoard's smoothing): the first points aren't pulled to 0."""

    __slots__ = ("weight", "_acc", "_n")

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self._acc = 0.0
        self._n = 0

    def __call__(self, y: float) -> float:
        w = self.weight
        self._acc = self._acc * w + (1.0 - w) * y
        self._n += 1
        debias = 1.0 - w**self._n if w > 0 else 1.0
        # w**n underflows to 0 after a few thousand points: debias -> 1, as it should.
        return self._acc / debias if debias > 0 else y


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
class SampleImage:
    step: int
    index: int
    prompt: str
    path: Path
    seed: int | None = None

    @property
    def exists(self) -> bool:
        return self.path.is_file()


@dataclass(frozen=True)
class SampleStep:
    step: int
    images: tuple[SampleImage, ...]


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
        return self.display_state in (*FINAL_STATES, "dead")


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
    """The incremental, thread-safe model of one run folder (see the module docstring)."""

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
        self.smoothing = _clamp_smoothing(smoothing)
        self._tail = EventTail(self.run.events, max_bytes=max_bytes)
        self._restarts = 0
        self.log = LogTail(self.run.log, keep=log_lines)
        self.alive = False
        self._alive_checked = 0.0
        self._config_max_steps: int | None | bool = False  # False: not read yet
        self._reset()

    def _reset(self) -> None:
        self.state = "unknown"
        self.error: str | None = None
        self.step = 0
        self.epoch = 0
        self.max_steps: int | None = None
        self.started: float | None = None
        self.updated: float | None = None
        self._paused = 0.0  # seconds between a stop and its resume: not training time
        self._stopped_at: float | None = None
        self.it_s: float | None = None
        self.mem_gb: float | None = None
        self.gpu_util: float | None = None
        self.events = 0
        self.loss = Series()
        self.loss_smooth = Series()
        self.val_loss = Series()
        self.lr = Series()
        self._ema = Ema(self.smoothing)
        self._speed_window: deque[tuple[float, int]] = deque(maxlen=32)
        self._samples: dict[int, list[SampleImage]] = {}
        self._checkpoints: dict[Path, CheckpointInfo] = {}
        self.skipped: list[tuple[str, str]] = []
        self.resumable_step: int | None = None

    # --- ingest ---------------------------------------------------------
    @property
    def pending(self) -> bool:
        """More bytes are waiting than the last poll read (backpressure kept them for later)."""
        return self._tail.size > self._tail.offset

    @property
    def bad_lines(self) -> int:
        return self._tail.bad_lines

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
                self._reset()
            for ev in events:
                self._apply(ev)
            self.events += len(events)
            now = time.monotonic()
            if check_alive and (events or now - self._alive_checked >= ALIVE_CHECK_EVERY or not self._alive_checked):
                self._alive_checked = now
                self.alive = self._probe_alive()
        return len(events)

    def _probe_alive(self) -> bool:
        if self.run.is_alive():
            return True
        # Between launch and the trainer taking run.lock, the pid file is the only sign of life.
        if self.state in ("unknown", "starting"):
            pid = self.run.pid()
            if pid is not None:
                return pid_alive(pid)
        return False

    def _apply(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        when = ev.get("time")
        if isinstance(when, (int, float)):
            if self.started is None:
                self.started = float(when)
            if self._stopped_at is not None:  # the first event of a resumed run
                self._paused += max(0.0, float(when) - self._stopped_at)
                self._stopped_at = None
            self.updated = float(when)
            if kind == "status" and ev.get("state") in ("stopped", "failed"):
                self._stopped_at = float(when)
        if isinstance(ev.get("max_steps"), int) and ev["max_steps"] > 0:
            self.max_steps = ev["max_steps"]
        if kind == "step":
            self._apply_step(ev)
        elif kind == "val":
            step, v = _int(ev.get("step"), self.step), _num(ev.get("val_loss", ev.get("loss")))
            if v is not None:
                self.val_loss.rewind(step)
                self.val_loss.append(step, v)
        elif kind == "sample":
            step = _int(ev.get("step"), self.step)
            images = self._samples.setdefault(step, [])
            index = _int(ev.get("index"), len(images))
            seed = ev.get("seed") if isinstance(ev.get("seed"), int) else None
            images.append(SampleImage(step, index, str(ev.get("prompt", "")), self._resolve(ev.get("path")), seed))
        elif kind == "checkpoint":
            path = self._resolve(ev.get("path"))
            try:
                st = path.stat()
                size, mtime = st.st_size, st.st_mtime
            except OSError:
                size, mtime = None, None
            t = float(when) if isinstance(when, (int, float)) else mtime
            self._checkpoints[path] = CheckpointInfo(_int(ev.get("step"), self.step), path, size, t)
            if ev.get("resumable"):
                self.resumable_step = _int(ev.get("step"), self.step)
        elif kind == "status":
            self.state = str(ev.get("state", self.state))
            err = ev.get("error")
            hint = ev.get("hint")
            self.error = f"{err}\n  hint: {hint}" if err and hint else (str(err) if err else None)
            if isinstance(ev.get("step"), int):
                self.step = ev["step"]
        elif kind == "skipped":
            images = ev.get("images")
            if isinstance(images, list):
                self.skipped = [
                    (str(im.get("path", "?")), str(im.get("reason", "?"))) for im in images if isinstance(im, dict)
                ]
        elif kind == "gpu":
            self.mem_gb = _num(ev.get("mem_gb"), self.mem_gb)
            self.gpu_util = _num(ev.get("util"), self.gpu_util)

    def _apply_step(self, ev: dict[str, Any]) -> None:
        step = _int(ev.get("step"), self.step + 1)
        if self.loss.last_x is not None and step <= self.loss.last_x:
            self._rewind(step)
        self.step = step
        self.epoch = _int(ev.get("epoch"), self.epoch)
        loss = _num(ev.get("loss"))
        if loss is not None and math.isfinite(loss):
            self.loss.append(step, loss)
            self.loss_smooth.append(step, self._ema(loss))
        lr = _num(ev.get("lr"))
        if lr is not None:
            self.lr.append(step, lr)
        val = _num(ev.get("val_loss"))
        if val is not None:
            self.val_loss.append(step, val)
        self.mem_gb = _num(ev.get("mem_gb"), self.mem_gb)
        when = ev.get("time")
        if isinstance(when, (int, float)):
            self._speed_window.append((float(when), step))
        it_s = _num(ev.get("it_s"))
        self.it_s = it_s if it_s and it_s > 0 else self._derived_speed()
        if self.state in ("unknown", "starting"):
            self.state = "running"

    def _rewind(self, step: int) -> None:
        self.loss.rewind(step)
        self.lr.rewind(step)
        self.val_loss.rewind(step)
        self._speed_window.clear()
        self._recompute_smooth()

    def _derived_speed(self) -> float | None:
        if len(self._speed_window) < 2:
            return self.it_s
        (t0, s0), (t1, s1) = self._speed_window[0], self._speed_window[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else self.it_s

    def _recompute_smooth(self) -> None:
        self._ema = Ema(self.smoothing)
        smooth = Series()
        smooth.xs = array("d", self.loss.xs)
        smooth.ys = array("d", map(self._ema, self.loss.ys))
        self.loss_smooth = smooth

    def _resolve(self, rel: Any) -> Path:
        p = Path(str(rel or ""))
        return p if p.is_absolute() else self.run.path / p

    # --- settings -------------------------------------------------------
    def set_smoothing(self, weight: float) -> None:
        """Change the EMA strength (0 = raw .. 0.999); recomputes the smoothed curve."""
        weight = _clamp_smoothing(weight)
        with self.lock:
            if weight != self.smoothing:
                self.smoothing = weight
                self._recompute_smooth()

    # --- derived --------------------------------------------------------
    def _total_steps(self) -> int | None:
        if self.max_steps:
            return self.max_steps
        if self._config_max_steps is False:
            self._config_max_steps = _config_max_steps(self.run.config)
        return self._config_max_steps or None

    @property
    def display_state(self) -> str:
        if self.state in ("running", "starting") and not self.alive:
            return "dead"
        if self.state == "unknown" and self.alive:
            return "starting"
        return self.state

    @property
    def ended(self) -> bool:
        return self.display_state in (*FINAL_STATES, "dead")

    def _elapsed(self) -> float:
        if self.started is None:
            return 0.0
        end = time.time() if self.alive and self.state not in FINAL_STATES else (self.updated or self.started)
        return max(0.0, end - self.started - self._paused)

    def _eta(self, total: int | None) -> float | None:
        if not total or not self.it_s or not self.alive or self.state in FINAL_STATES:
            return None
        return max(0, total - self.step) / self.it_s

    def row(self) -> RunRow:
        with self.lock:
            total = self._total_steps()
            return RunRow(
                run_id=self.run.id,
                state=self.state,
                display_state=self.display_state,
                alive=self.alive,
                step=self.step,
                max_steps=total,
                loss=self.loss.last,
                loss_smooth=self.loss_smooth.last,
                it_s=self.it_s,
                elapsed=self._elapsed(),
                eta=self._eta(total),
                started=self.started,
            )

    def snapshot(self, points: int = 400, log_lines: int = 200, recent: int = 8) -> MonitorView:
        """An immutable view; series downsampled to at most ``points`` points each."""
        with self.lock:
            total = self._total_steps()
            samples = tuple(
                SampleStep(step, tuple(sorted(imgs, key=lambda im: im.index)))
                for step, imgs in sorted(self._samples.items())
            )
            log = tuple(self.log.lines)[-log_lines:] if log_lines else ()
            return MonitorView(
                run_id=self.run.id,
                path=self.run.path,
                resumable_step=self.resumable_step,
                state=self.state,
                display_state=self.display_state,
                alive=self.alive,
                error=self.error,
                step=self.step,
                max_steps=total,
                epoch=self.epoch,
                elapsed=self._elapsed(),
                eta=self._eta(total),
                loss=self.loss.last,
                loss_smooth=self.loss_smooth.last,
                val_loss=self.val_loss.last,
                lr=self.lr.last,
                it_s=self.it_s,
                mem_gb=self.mem_gb,
                gpu_util=self.gpu_util,
                smoothing=self.smoothing,
                events=self.events,
                bad_lines=self.bad_lines,
                loss_xy=self.loss.downsample(points),
                smooth_xy=self.loss_smooth.downsample(points),
                val_xy=self.val_loss.downsample(points),
                lr_xy=self.lr.downsample(points),
                samples=samples,
                checkpoints=tuple(sorted(self._checkpoints.values(), key=lambda c: (c.step, c.name))),
                log=log,
                log_total=self.log.total,
                skipped=tuple(self.skipped),
                recent=tuple(
                    (int(x), y, sm)
                    for x, y, sm in zip(
                        self.loss.xs[-recent:], self.loss.ys[-recent:], self.loss_smooth.ys[-recent:], strict=True
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


def _clamp_smoothing(w: float) -> float:
    return round(min(0.999, max(0.0, float(w))), 3)


def _num(v: Any, default: float | None = None) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return default
    return float(v)


def _int(v: Any, default: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return default
    return int(v)


def _config_max_steps(path: Path) -> int | None:
    """train.max_steps from a run's frozen config.toml, read without the engine's schema."""
    try:
        from lorawb.core.tomlio import load_document, to_plain

        doc, _ = load_document(path)
        value = to_plain(doc).get("train", {}).get("max_steps")
    except Exception:  # a missing or broken config only costs the progress bar its total
        return None
    return value if isinstance(value, int) and value > 0 else None
