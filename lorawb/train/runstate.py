"""What a run's events.jsonl adds up to: the one fold of its events, used by every view of a run.

``lorawb runs`` (and ``--json``), ``lorawb watch``, the Train tab, ``lorawb compare``, resume
and the trainer itself read a run through :class:`RunState`, so they never disagree about a
run's state, step, loss or checkpoints. The events come from lorawb.train.events'
``EventTail`` with ``event_problem`` as its check: a malformed line (garbage, a step of
``1e400`` or ``"abc"``, a nan loss) never reaches the fold; it is skipped and named.

Rules of the fold: the last ``status`` event sets the state (a ``step`` event moves an
unknown or starting run to running); a step at or before the last logged one rewinds the
series (a resumed run logs those steps again); ``max_steps`` comes from any event that has it
(else the run's config.toml); the time between a ``stopped``/``failed`` status and the next
event is a pause, not training time; a checkpoint path is counted once (the last event for it
wins); ``resumable`` checkpoints say where a resume starts. The loss is kept as a series with
its debiased moving average (TensorBoard's smoothing), whose strength can change at any time.

No torch, no numpy at import (the chart downsampling imports numpy when asked).
"""

from __future__ import annotations

import math
import time
from array import array
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINAL_STATES = ("finished", "stopped", "failed")
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
        import numpy as np

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


def clamp_smoothing(w: float) -> float:
    return round(min(0.999, max(0.0, float(w))), 3)


# --------------------------------------------------------------------------- derived states
def display_state(state: str, alive: bool) -> str:
    """The state a person is shown: a run that says running but whose process is gone has died;
    a run with a live process that has not said anything yet is starting."""
    if state in ("running", "starting") and not alive:
        return "dead"
    if state == "unknown" and alive:
        return "starting"
    return state


def has_ended(state: str, alive: bool) -> bool:
    """Nothing more will happen to the run: it finished, or no process works on it (stopped,
    failed, killed, never started), whatever its events.jsonl says or how it ends."""
    return state == "finished" or not alive


def elapsed(started: float | None, updated: float | None, paused: float, running: bool) -> float:
    """Training seconds: from the first event to the last (to now while it runs), less the pauses."""
    if started is None:
        return 0.0
    end = time.time() if running else (updated or started)
    return max(0.0, end - started - paused)


def eta(total: int | None, step: int, it_s: float | None, state: str, alive: bool) -> float | None:
    if not total or not it_s or not alive or state in FINAL_STATES:
        return None
    return max(0, total - step) / it_s


# --------------------------------------------------------------------------- what a sample is
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


# --------------------------------------------------------------------------- the fold
class RunState:
    """A run's events folded by the rules in the module docstring. ``apply`` takes events that
    passed ``event_problem`` (EventTail's check); relative paths are resolved against ``root``."""

    def __init__(self, root: Path, smoothing: float = DEFAULT_SMOOTHING) -> None:
        self.root = Path(root)
        self.smoothing = clamp_smoothing(smoothing)
        self.reset()

    def reset(self) -> None:
        self.state = "unknown"
        self.error: str | None = None
        self.hint: str | None = None
        self.step = 0
        self.epoch = 0
        self.max_steps: int | None = None
        self.started: float | None = None
        self.updated: float | None = None
        self.paused = 0.0  # seconds between a stop and its resume: not training time
        self.stopped_at: float | None = None
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
        self.samples: dict[int, list[SampleImage]] = {}
        self.sheets: dict[int, Path] = {}  # sample step -> its contact sheet
        self.checkpoints: dict[Path, dict[str, Any]] = {}  # path -> its (last) checkpoint event
        self.skipped: list[tuple[str, str]] = []
        self.resumable_step: int | None = None

    # --- ingest -----------------------------------------------------------
    def apply(self, ev: dict[str, Any]) -> None:
        self.events += 1
        kind = ev.get("type")
        when = ev.get("time")
        if isinstance(when, (int, float)):
            if self.started is None:
                self.started = float(when)
            if self.stopped_at is not None:  # the first event of a resumed run
                self.paused += max(0.0, float(when) - self.stopped_at)
                self.stopped_at = None
            self.updated = float(when)
            if kind == "status" and ev.get("state") in ("stopped", "failed"):
                self.stopped_at = float(when)
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
            images = self.samples.setdefault(step, [])
            index = _int(ev.get("index"), len(images))
            seed = ev.get("seed") if isinstance(ev.get("seed"), int) else None
            images.append(SampleImage(step, index, str(ev.get("prompt", "")), self.resolve(ev.get("path")), seed))
        elif kind == "sheet":
            self.sheets[_int(ev.get("step"), self.step)] = self.resolve(ev.get("path"))
        elif kind == "checkpoint":
            path = self.resolve(ev.get("path"))
            self.checkpoints.pop(path, None)  # the last event for a path counts, in the order saved
            self.checkpoints[path] = ev
            if ev.get("resumable"):
                self.resumable_step = _int(ev.get("step"), self.step)
        elif kind == "status":
            self.state = str(ev.get("state", self.state))
            self.error = ev.get("error")
            self.hint = ev.get("hint")
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
        if loss is not None:
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

    def set_smoothing(self, weight: float) -> None:
        """Change the EMA strength (0 = raw .. 0.999); recomputes the smoothed curve."""
        weight = clamp_smoothing(weight)
        if weight != self.smoothing:
            self.smoothing = weight
            self._recompute_smooth()

    def resolve(self, rel: Any) -> Path:
        p = Path(str(rel or ""))
        return p if p.is_absolute() else self.root / p

    # --- what it adds up to -----------------------------------------------
    @property
    def error_text(self) -> str | None:
        """The error with its hint, as a monitor shows it."""
        if self.error and self.hint:
            return f"{self.error}\n  hint: {self.hint}"
        return self.error or None

    def figures(self) -> dict[str, Any]:
        """What every view of the run shows alike (the run list, ``lorawb runs``, the monitor)."""
        return {
            "state": self.state,
            "step": self.step,
            "epoch": self.epoch,
            "loss": self.loss.last,
            "loss_smooth": self.loss_smooth.last,
            "lr": self.lr.last,
            "it_s": self.it_s,
            "resumable_step": self.resumable_step,
        }

    def checkpoint_events(self) -> list[dict[str, Any]]:
        """Each checkpoint's (last) event, in the order they were saved."""
        return list(self.checkpoints.values())

    def sample_images(self) -> list[SampleImage]:
        return [im for step in sorted(self.samples) for im in sorted(self.samples[step], key=lambda im: im.index)]


def _num(v: Any, default: float | None = None) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return default
    return float(v)


def _int(v: Any, default: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        return default
    return v


def config_max_steps(path: Path) -> int | None:
    """train.max_steps from a run's frozen config.toml, read without the engine's schema."""
    try:
        from lorawb.core.tomlio import load_document, to_plain

        doc, _ = load_document(path)
        value = to_plain(doc).get("train", {}).get("max_steps")
    except Exception:  # a missing or broken config only costs the progress bar its total
        return None
    return value if isinstance(value, int) and value > 0 else None


def read_problems(tail: Any, ended: bool) -> tuple[str, ...]:
    """The malformed lines an EventTail skipped, named (the first few) and counted; on a run that
    has ended, a half-written last line too (it will never be finished)."""
    problems = list(tail.problems)
    unnamed = tail.bad_lines - len(tail.problems)
    if unnamed > 0:
        problems.append(f"and {unnamed} more")
    if ended and tail.unfinished:
        problems.append(f"line {tail.line + 1}: half written ({tail.unfinished} bytes, no end of line)")
    return tuple(problems)
