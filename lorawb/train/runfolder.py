"""The run folder contract: runs/<run-id>/ and what lives in it.

    config.toml       the fully resolved config, frozen at start
    events.jsonl      see lorawb.train.events
    train.log         the human log
    checkpoints/      <name>-<step>.safetensors (kohya format)
    samples/          <step>-<i>.png
    state/            resume state (optimizer, scheduler, RNG, data order)
    run.pid           pid of the training process while it runs
    run.lock          flock'ed by the trainer: a second trainer is refused
    stop.request      created by `lorawb stop`; the trainer saves and stops

This module reads and pokes run folders without importing torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lorawb.errors import RunError
from lorawb.train.detached import JobFolder
from lorawb.train.events import EventTail
from lorawb.words import plural


def new_run_id(runs_dir: Path, name: str = "") -> str:
    """Readable, sortable: 20261125-1432-mira (a -2, -3 suffix if taken)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40]
    base = f"{stamp}-{slug}" if slug else stamp
    run_id, n = base, 2
    while (runs_dir / run_id).exists():
        run_id, n = f"{base}-{n}", n + 1
    return run_id


@dataclass
class RunFolder(JobFolder):
    """A training run's folder; its lock, pid and stop request are lorawb.train.detached's."""

    worker_name = "trainer"
    job_name = "run"

    config = property(lambda self: self.path / "config.toml")
    log = property(lambda self: self.path / "train.log")
    checkpoints = property(lambda self: self.path / "checkpoints")
    samples = property(lambda self: self.path / "samples")
    state = property(lambda self: self.path / "state")

    def create(self) -> RunFolder:
        for d in (self.path, self.checkpoints, self.samples, self.state):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def busy_hint(self) -> str:
        return f"watch it with `lorawb watch {self.id}` or stop it with `lorawb stop {self.id}`"


@dataclass
class RunSummary:
    """What a run list shows: folded from events.jsonl."""

    id: str
    path: Path
    state: str = "unknown"  # starting|running|finished|stopped|failed|unknown
    alive: bool = False
    step: int = 0
    max_steps: int | None = None
    epoch: int = 0
    loss: float | None = None
    loss_ema: float | None = None
    lr: float | None = None
    it_s: float | None = None
    started: float | None = None
    updated: float | None = None
    paused: float = 0.0  # seconds between a stop and its resume
    stopped_at: float | None = None
    error: str | None = None
    resumable_step: int | None = None  # the step of the last checkpoint saved with its resume state
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        if self.started is None or self.updated is None:
            return 0.0
        return max(0.0, self.updated - self.started - self.paused)

    @property
    def eta(self) -> float | None:
        if not self.max_steps or not self.it_s or self.state != "running":
            return None
        return max(0, self.max_steps - self.step) / self.it_s

    @property
    def resumable(self) -> bool:
        """Resume can continue it: it has saved resume state and did not finish."""
        return self.resumable_step is not None and self.state != "finished" and not self.alive

    @property
    def display_state(self) -> str:
        """A run that says 'running' but whose process is gone has died."""
        if self.state in ("running", "starting") and not self.alive:
            return "dead"
        return self.state

    def apply(self, ev: dict[str, Any], ema: float = 0.9) -> None:
        t = ev.get("type")
        when = ev.get("time")
        if isinstance(when, (int, float)):
            if self.started is None:
                self.started = when
            if self.stopped_at is not None:  # the first event of a resumed run
                self.paused += max(0.0, when - self.stopped_at)
                self.stopped_at = None
            self.updated = when
            if t == "status" and ev.get("state") in ("stopped", "failed"):
                self.stopped_at = when
        if t == "step":
            self.step = int(ev.get("step", self.step))
            self.epoch = int(ev.get("epoch", self.epoch))
            loss = ev.get("loss")
            if isinstance(loss, (int, float)):
                self.loss = float(loss)
                self.loss_ema = self.loss if self.loss_ema is None else ema * self.loss_ema + (1 - ema) * self.loss
            self.lr = ev.get("lr", self.lr)
            self.it_s = ev.get("it_s", self.it_s)
            if "max_steps" in ev:
                self.max_steps = ev["max_steps"]
            if self.state in ("unknown", "starting"):
                self.state = "running"
        elif t == "status":
            self.state = str(ev.get("state", self.state))
            self.error = ev.get("error")
            if "max_steps" in ev:
                self.max_steps = ev["max_steps"]
        elif t == "checkpoint":
            self.checkpoints.append(ev)
            if ev.get("resumable") and isinstance(ev.get("step"), int):
                self.resumable_step = ev["step"]
        elif t == "sample":
            self.samples.append(ev)


def summarize(run: RunFolder) -> RunSummary:
    s = RunSummary(id=run.id, path=run.path)
    for ev in EventTail(run.events, max_bytes=1 << 62).poll():
        s.apply(ev)
    s.alive = run.is_alive()
    return s


def list_runs(runs_dir: Path) -> list[RunFolder]:
    if not runs_dir.is_dir():
        return []
    return [RunFolder(p) for p in sorted(runs_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")]


def find_run(runs_dir: Path, ref: str) -> RunFolder:
    """A run by id, unique id prefix, path, or 'last'."""
    p = Path(ref)
    if (p / "events.jsonl").exists() or (p / "config.toml").exists():
        return RunFolder(p.resolve())
    runs = list_runs(runs_dir)
    if ref in ("last", "latest") and runs:
        return runs[-1]
    exact = [r for r in runs if r.id == ref]
    if exact:
        return exact[0]
    matches = [r for r in runs if r.id.startswith(ref) or r.id.endswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunError(f"no run {ref!r}", path=runs_dir, hint="`lorawb runs` lists them")
    raise RunError(f"{ref!r} matches {plural(len(matches), 'run')}: " + ", ".join(r.id for r in matches), path=runs_dir)
