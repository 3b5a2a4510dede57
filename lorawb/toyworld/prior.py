"""Prior preservation measured on the toy world: does the LoRA stop bleeding into other prompts?

Trains the sample project three ways — plain, with regularisation images (drawn by the base
model itself, ``lorawb reg generate``, before ``measure``), with output preservation — and lets the attribute
reader count, for each LoRA: trigger prompts drawn as the character, unrelated prompts that
keep their own hair and outfit. Each method's training speed (steps per second, from its
run's step events) is set against the plain run's, measured in the same process.

The toy tokenizer knows only toy-world words, so the class word ("person") is a word the
base model never learned a look for: the class prompt is the caption without the
character, which is exactly what must not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorawb.toyworld import check, sample

CLASS_WORD = "person"
METHODS = ("plain", "reg", "output")


@dataclass
class MethodResult:
    method: str
    lora: Path
    steps_per_s: float
    result: check.CheckResult


def overrides_for(method: str) -> list[str]:
    base = ["sample.every_n_steps=0", "sample.at_start=false"]
    if method == "plain":
        return [*base, "dataset.reg_path=none"]
    if method == "reg":
        return base  # the project's reg/ (drawn first: bench/prior_preservation.py prepare_reg)
    if method == "output":
        return [*base, "dataset.reg_path=none", "train.preservation=output", f"train.preservation_class={CLASS_WORD}"]
    raise ValueError(method)


def steps_per_second(lora: Path) -> float:
    """Steps per second of the run that wrote ``lora``: its step events' count over their time span."""
    from lorawb.train.events import read_events

    events = [e for e in read_events(lora.parent.parent / "events.jsonl") if e.get("type") == "step"]
    if len(events) < 2:
        return 0.0
    return (len(events) - 1) / max(1e-9, events[-1]["time"] - events[0]["time"])


def train(project_dir: Path, method: str, name: str = "", extra: Sequence[str] = ()) -> Path:
    from lorawb.core.project import Project
    from lorawb.train.config import resolve_config
    from lorawb.train.process import create_run, launch

    project = Project.load(project_dir)
    run = create_run(project, resolve_config(project, None, [*overrides_for(method), *extra]), name or method)
    launch(run, detach=False)
    return sorted(run.checkpoints.glob("*.safetensors"))[-1]


def measure(
    project_dir: Path,
    methods: Sequence[str] = METHODS,
    *,
    seeds: Sequence[int] = tuple(range(8)),
    cfg: float = 1.5,
    loras: dict[str, Path] | None = None,
    extra: dict[str, list[str]] | None = None,
) -> tuple[check.CheckResult, list[MethodResult]]:
    """(the base model's result, one result per method); ``loras``: methods already trained;
    ``extra``: more ``--set`` overrides per method. The "reg" method trains on the project's reg/,
    drawn first by the caller (``lorawb reg generate --class person``: the matrix package draws them,
    and toyworld sits below it)."""
    from lorawb.toyworld.toymodel import load_pipeline

    loras = dict(loras or {})
    if "reg" in methods and "reg" not in loras and not (project_dir / "reg").is_dir():
        raise ValueError(f"the reg method needs {project_dir / 'reg'}: draw the {CLASS_WORD} images first")
    for m in methods:
        if m not in loras:
            loras[m] = train(project_dir, m, extra=(extra or {}).get(m, ()))
    pipe = load_pipeline(project_dir / sample.MODEL_DIR, "cpu")
    base = check.check(pipe, "base", seeds=seeds, cfg=cfg)
    out = []
    for m in methods:
        pipe.load_lora_weights(str(loras[m]), adapter_name=m)
        pipe.set_adapters([m], [1.0])
        res = check.check(pipe, m, seeds=seeds, cfg=cfg)
        pipe.delete_adapters([m])
        out.append(MethodResult(m, loras[m], steps_per_second(loras[m]), res))
    return base, out


LABELS = {"plain": "LoRA, no preservation", "reg": "LoRA + reg images", "output": "LoRA + output preservation"}


def table(base: check.CheckResult, results: Sequence[MethodResult]) -> str:
    """Markdown rows: trigger prompts as the character, unrelated prompts keeping their look, speed."""
    plain = next((r for r in results if r.method == "plain"), None)
    lines = [
        "| | trigger prompts drawn as the character | unrelated prompts keeping their own hair and outfit | steps/s vs plain |",
        "|---|---|---|---|",
        f"| base model | {base.character['all']:.0%} | {base.unrelated:.0%} | |",
    ]
    for r in results:
        speed = f"{r.steps_per_s / plain.steps_per_s:.2f}x" if plain and plain.steps_per_s else ""
        lines.append(
            f"| {LABELS.get(r.method, r.method)} | {r.result.character['all']:.0%} | {r.result.unrelated:.0%} | {speed} |"
        )
    return "\n".join(lines)


def as_dict(base: check.CheckResult, results: Sequence[MethodResult]) -> dict[str, Any]:
    return {
        "base": base.as_dict(),
        "methods": {
            r.method: {"steps_per_s": r.steps_per_s, "lora": str(r.lora), **r.result.as_dict()} for r in results
        },
    }
