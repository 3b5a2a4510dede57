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
from lorawb.train import runstate
from lorawb.train.detached import JobFolder
from lorawb.train.events import EventTail, event_problem
from lorawb.train.runstate import FINAL_STATES, RunState, SampleImage


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
    """What a run list shows: the run's events folded by lorawb.train.runstate (the one fold)."""

    id: str
    path: Path
    state: str = "unknown"  # starting|running|finished|stopped|failed|unknown
    alive: bool = False
    step: int = 0
    max_steps: int | None = None
    epoch: int = 0
    loss: float | None = None
    loss_smooth: float | None = None  # the monitor's smoothed loss at its default strength
    lr: float | None = None
    it_s: float | None = None
    started: float | None = None
    updated: float | None = None
    paused: float = 0.0  # seconds between a stop and its resume
    error: str | None = None
    hint: str | None = None
    resumable_step: int | None = None  # the step of the last checkpoint saved with its resume state
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # each checkpoint's event, as saved
    samples: list[SampleImage] = field(default_factory=list)
    problems: tuple[str, ...] = ()  # malformed lines of events.jsonl, skipped (named)

    @property
    def elapsed(self) -> float:
        running = self.alive and self.state not in FINAL_STATES
        return runstate.elapsed(self.started, self.updated, self.paused, running)

    @property
    def eta(self) -> float | None:
        return runstate.eta(self.max_steps, self.step, self.it_s, self.state, self.alive)

    @property
    def resumable(self) -> bool:
        """Resume can continue it: it has saved resume state and did not finish."""
        return self.resumable_step is not None and self.state != "finished" and not self.alive

    @property
    def display_state(self) -> str:
        return runstate.display_state(self.state, self.alive)


def summarize(run: RunFolder) -> RunSummary:
    """The run's events.jsonl, folded (malformed lines skipped and named), and whether it lives."""
    fold = RunState(run.path)
    tail = EventTail(run.events, max_bytes=1 << 62, check=event_problem)
    for ev in tail.poll():
        fold.apply(ev)
    alive = run.is_alive()
    return RunSummary(
        id=run.id,
        path=run.path,
        alive=alive,
        **fold.figures(),
        max_steps=fold.max_steps or runstate.config_max_steps(run.config),
        started=fold.started,
        updated=fold.updated,
        paused=fold.paused,
        error=fold.error,
        hint=fold.hint,
        checkpoints=fold.checkpoint_events(),
        samples=fold.sample_images(),
        problems=runstate.read_problems(tail, runstate.has_ended(fold.state, alive)),
    )


def list_runs(runs_dir: Path) -> list[RunFolder]:
    if not runs_dir.is_dir():
        return []
    return [RunFolder(p) for p in sorted(runs_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")]


def find_run(runs_dir: Path, ref: str) -> RunFolder:
    """A run by id, unique id prefix, path, or 'last'."""
    p = Path(ref)
    if (p / "events.jsonl").exists() or (p / "config.toml").exists():
        return RunFolder(p.resolve())
    from lorawb.core.refs import pick

    return pick(
        list_runs(runs_dir),
        ref,
        lambda r: r.id,
        what=("run", "runs"),
        where=runs_dir,
        hint="`lorawb runs` lists them",
        error=RunError,
        suffix=True,
    )
