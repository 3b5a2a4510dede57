"""Comparing runs: what changed in the config, and what it did to the loss.

``config_diff`` flattens two frozen ``config.toml`` files (or plain dicts) to dotted keys
and returns the rows that differ as ``(key, a, b)``; ``compare_runs`` adds both runs' loss
curves (raw and smoothed, downsampled, ready to overlay) and a few figures per run.
Users change one parameter at a time between runs; this is where they see the effect.
No UI here: the Train tab's Compare view and ``lorawb compare`` render these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorawb.core.tomlio import load_document, to_plain
from lorawb.errors import ConfigError
from lorawb.train.monitor import DEFAULT_SMOOTHING, RunMonitor
from lorawb.train.runfolder import RunFolder

MISSING = object()  # a key only one side has


@dataclass(frozen=True)
class DiffRow:
    key: str
    a: Any  # MISSING when run A has no such key
    b: Any

    def __iter__(self):  # rows unpack as (key, a, b)
        return iter((self.key, self.a, self.b))


@dataclass(frozen=True)
class Curve:
    run_id: str
    raw: tuple[tuple[float, ...], tuple[float, ...]]
    smooth: tuple[tuple[float, ...], tuple[float, ...]]
    val: tuple[tuple[float, ...], tuple[float, ...]]
    steps: int
    final_loss: float | None  # last smoothed loss
    min_loss: float | None  # lowest smoothed loss
    state: str


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    diff: tuple[DiffRow, ...]
    curves: tuple[Curve, Curve]
    common_step: int | None  # the last step both runs reached
    loss_at_common: tuple[float | None, float | None]  # smoothed loss of each run at common_step
    regularisation: tuple[str, str] = ("none", "none")  # what kept each LoRA general (prior_method)
    changed: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # settings each run changed when it resumed


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def read_config(run: RunFolder) -> dict[str, Any]:
    """A run's frozen config as plain dicts ({} when the run has none yet)."""
    if not run.config.is_file():
        return {}
    doc, _ = load_document(run.config)
    data = to_plain(doc)
    if not isinstance(data, dict):  # pragma: no cover - tomlkit always gives a table
        raise ConfigError("not a TOML table", path=run.config)
    return data


# What a run frozen before a setting existed did: a missing key is this value, not a change.
LEGACY = {
    "dataset.reg_path": "none",
    "dataset.prior_loss_weight": 1.0,
    "train.preservation": "none",
    "train.preservation_class": "",
    "train.preservation_weight": 1.0,
}


def prior_method(config: dict[str, Any]) -> str:
    """How a run keeps its LoRA off other subjects, in words: reg images, output preservation, or none."""
    flat = flatten(config)
    parts = []
    reg = flat.get("dataset.reg_path", "none") or "none"
    if reg != "none":
        parts.append(
            f"reg images {reg.rstrip('/').rsplit('/', 1)[-1]}/ (weight {flat.get('dataset.prior_loss_weight', 1.0):g})"
        )
    if flat.get("train.preservation", "none") == "output":
        cls = flat.get("train.preservation_class", "")
        parts.append(f"output preservation '{cls}' (weight {flat.get('train.preservation_weight', 1.0):g})")
    return " + ".join(parts) or "none"


def config_diff(a: dict[str, Any], b: dict[str, Any], *, ignore: tuple[str, ...] = ()) -> list[DiffRow]:
    """The keys whose values differ between two configs, in a's order then b's new keys.

    A key only one config has, with its ``LEGACY`` value on the other side, is no difference
    (the older run simply predates the setting).
    """
    fa, fb = flatten(a), flatten(b)
    for key, old in LEGACY.items():
        if key in fa and key not in fb:
            fb[key] = old
        elif key in fb and key not in fa:
            fa[key] = old
    rows = []
    for key in list(fa) + [k for k in fb if k not in fa]:
        if any(key == i or key.startswith(i + ".") for i in ignore):
            continue
        va, vb = fa.get(key, MISSING), fb.get(key, MISSING)
        if not _same(va, vb):
            rows.append(DiffRow(key, va, vb))
    return rows


def _same(a: Any, b: Any) -> bool:
    # 1 == 1.0 is the same setting; true == 1 is not (Python says it is).
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return a == b


def format_value(v: Any) -> str:
    """How a config value reads in a table: TOML-ish, '-' for a missing key."""
    if v is MISSING:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return repr(v) if v == "" else v
    if isinstance(v, list):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    return str(v)


def curve(monitor: RunMonitor, points: int = 400) -> Curve:
    view = monitor.snapshot(points=points, log_lines=0)
    with monitor.lock:
        smooth = monitor.loss_smooth.ys
        lowest = min(smooth) if smooth else None
    return Curve(
        run_id=view.run_id,
        raw=view.loss_xy,
        smooth=view.smooth_xy,
        val=view.val_xy,
        steps=view.step,
        final_loss=view.loss_smooth,
        min_loss=lowest,
        state=view.display_state,
    )


def smoothed_at(monitor: RunMonitor, step: int) -> float | None:
    """The smoothed loss at the last logged step <= ``step``."""
    import bisect

    with monitor.lock:
        xs, ys = monitor.loss_smooth.xs, monitor.loss_smooth.ys
        i = bisect.bisect_right(xs, step) - 1
        return ys[i] if i >= 0 else None


def compare_runs(
    a: RunFolder | RunMonitor,
    b: RunFolder | RunMonitor,
    *,
    points: int = 400,
    smoothing: float = DEFAULT_SMOOTHING,
    ignore: tuple[str, ...] = (),
) -> Comparison:
    """Config diff + loss overlay of two runs. Pass monitors the caller already follows to avoid re-reading."""
    ma = a if isinstance(a, RunMonitor) else _loaded(a, smoothing)
    mb = b if isinstance(b, RunMonitor) else _loaded(b, smoothing)
    conf_a, conf_b = read_config(ma.run), read_config(mb.run)
    diff = config_diff(conf_a, conf_b, ignore=ignore)
    ca, cb = curve(ma, points), curve(mb, points)
    common = min(ca.steps, cb.steps) if ca.steps and cb.steps else None
    at = (smoothed_at(ma, common), smoothed_at(mb, common)) if common else (None, None)
    prior = (prior_method(conf_a), prior_method(conf_b))
    changed = (resume_changes(ma.run), resume_changes(mb.run))
    return Comparison(ma.run.id, mb.run.id, tuple(diff), (ca, cb), common, at, prior, changed)


def resume_changes(run: RunFolder) -> tuple[str, ...]:
    """The settings a run changed when it was resumed (``lorawb resume RUN --set``), in words:
    its config.toml shows the value it ended with, these say from which step."""
    from lorawb.train.events import read_events

    out = []
    for ev in read_events(run.events):
        if ev.get("type") == "config_change":
            for c in ev.get("changes", []):
                out.append(f"{c.get('key')} {c.get('from')} → {c.get('to')} from step {ev.get('step')}")
    return tuple(out)


def _loaded(run: RunFolder, smoothing: float) -> RunMonitor:
    m = RunMonitor(run, smoothing=smoothing, log_lines=1)
    m.catch_up()
    return m
