"""A ready matrix spec for a project's run: what `lorawb matrix new` and the tab's `n` write.

The run's checkpoints (the latest run with checkpoints by default; at most six, spread over
the run, the last included) × LoRA weights 0, 0.5, 0.75, 1 × the project's contexts and
styles (``[tags.groups]``, else the trigger prompts of its samples) × 2 seeds, plus control
prompts without the trigger (the project's other sample prompts) to measure leakage. With
``fill_gaps`` the prompts are only the context × style pairs the dataset lacks (empty or
thin in the composition table), zipped: the cells worth promoting into the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomlkit

from lorawb.core.captions import Caption, tag_key
from lorawb.core.fsutil import atomic_write_text
from lorawb.errors import RunError
from lorawb.matrix.folder import MatrixFolder, new_matrix_id
from lorawb.matrix.lorafile import run_checkpoints, spread
from lorawb.matrix.spec import parse_spec
from lorawb.train.config import load_run_config
from lorawb.train.runfolder import RunFolder, find_run, list_runs

if TYPE_CHECKING:
    from lorawb.core.project import Project

DEFAULT_WEIGHTS = (0.0, 0.5, 0.75, 1.0)
DEFAULT_SEEDS = (0, 1)
MAX_CHECKPOINTS = 6
SLOT_GROUPS = ("context", "style")


@dataclass
class NewMatrix:
    """What to write: the options of `lorawb matrix new` (defaults as above)."""

    name: str = ""
    run: str = ""  # run id / prefix / 'last'; "" = the latest run with checkpoints
    fill_gaps: bool = False
    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    checkpoints: int = MAX_CHECKPOINTS  # at most this many, spread over the run
    steps: tuple[int, ...] = ()  # explicit checkpoint steps (instead of spreading)
    notes: list[str] = field(default_factory=list)


def pick_run(project: Project, ref: str = "") -> RunFolder:
    if ref:
        return find_run(project.runs_dir, ref)
    runs = [r for r in list_runs(project.runs_dir) if run_checkpoints(r)]
    if not runs:
        raise RunError(
            "no run with checkpoints in this project yet",
            path=project.runs_dir,
            hint="train one first (`lorawb train`, or n in the Train tab)",
        )
    return runs[-1]


def _sample_prompts(project: Project, run: RunFolder) -> list[str]:
    if run.config.is_file():
        return list(load_run_config(run.config).sample.prompts)
    return list(project.config.sample.get("prompts", []))


def _names_trigger(prompt: str, trigger: str) -> bool:
    return (
        "{trigger}" in prompt or bool(trigger) and tag_key(trigger) in {tag_key(t) for t in Caption.parse(prompt).tags}
    )


def _gaps(project: Project, groups: dict[str, list[str]]) -> list[tuple[str, str]]:
    from lorawb.core.caption_ops import load_captions
    from lorawb.core.composition import pair_gaps

    a, b = SLOT_GROUPS
    return pair_gaps(load_captions(project), (a, groups[a]), (b, groups[b]))


def build_spec(project: Project, opts: NewMatrix) -> tuple[str, RunFolder]:
    """The matrix.toml text (commented) for ``opts``, and the run it tests."""
    run = pick_run(project, opts.run)
    ckpts = run_checkpoints(run)
    if not ckpts:
        raise RunError(f"run {run.id} has no checkpoints yet", path=run.path, hint="wait for its first save")
    if opts.steps:
        have = {c.step for c in ckpts}
        missing = [s for s in opts.steps if s not in have]
        if missing:
            raise RunError(
                f"run {run.id} has no checkpoint at step {missing[0]} (it has {', '.join(str(c.step) for c in ckpts)})"
            )
        steps = list(opts.steps)
    else:
        steps = [c.step for c in spread(ckpts, opts.checkpoints)]
    trigger = project.trigger
    cfg = load_run_config(run.config) if run.config.is_file() else None
    groups = {k: list(v) for k, v in project.config.tags.groups.items() if v}
    slots: dict[str, list[str]] = {}
    zips: list[list[str]] = []
    prompts = _sample_prompts(project, run)
    if all(g in groups for g in SLOT_GROUPS):
        slots = {g: groups[g] for g in SLOT_GROUPS}
        if opts.fill_gaps:
            gaps = _gaps(project, groups)
            if gaps:
                slots = {SLOT_GROUPS[0]: [a for a, _ in gaps], SLOT_GROUPS[1]: [b for _, b in gaps]}
                zips = [list(SLOT_GROUPS)]
                opts.notes.append(f"{len(gaps)} context × style pairs the dataset lacks (empty or thin)")
            else:
                opts.notes.append("the dataset has every context × style pair; testing them all")
    elif groups:
        name = next(iter(groups))
        slots = {name: groups[name]}
        if opts.fill_gaps:
            opts.notes.append("--fill-gaps needs context and style groups in [tags.groups]; testing every value")
    else:
        scenes = []
        for p in prompts:
            if _names_trigger(p, trigger):
                rest = [
                    t for t in Caption.parse(p.replace("{trigger}", trigger)).tags if tag_key(t) != tag_key(trigger)
                ]
                if rest:
                    scenes.append(", ".join(rest))
        if scenes:
            slots = {"scene": scenes}
    controls = [p for p in prompts if not _names_trigger(p, trigger)]
    if not controls and SLOT_GROUPS[0] in groups:
        controls = groups[SLOT_GROUPS[0]][:2]  # the scene alone, without the character
    if not controls:
        opts.notes.append("no control prompts (sample prompts without the trigger): leak is not measured")
    template = (
        ", ".join(["{trigger}", *(f"{{{s}}}" for s in slots)]) if trigger else ", ".join(f"{{{s}}}" for s in slots)
    )
    doc = tomlkit.document()
    doc.add(tomlkit.comment("lorawb prompt matrix: checkpoints × LoRA weights × prompts × seeds."))
    doc.add(tomlkit.comment("`lorawb matrix run . ID` draws it, `lorawb matrix show . ID` scores it; edit freely."))
    m = tomlkit.table()
    _put(m, "run", run.id, "the training run whose checkpoints `checkpoint` names by step")
    _put(m, "prompt", template or "{trigger}", "{trigger} and one {slot} per slot axis below")
    _put(m, "negative", cfg.sample.negative if cfg else "", "negative prompt")
    _put(m, "steps", cfg.sample.steps if cfg else 20, "sampling steps (the run's sample settings)")
    _put(m, "cfg", (cfg.sample.cfg if cfg else 0.0) or 0.0, "guidance scale (0: the model's recommendation)")
    _put(m, "sampler", cfg.sample.scheduler if cfg else "ddim", "ddim, euler or dpm")
    _put(m, "controls", controls, "prompts without the trigger: leak into them is measured")
    if zips:
        _put(m, "zip", zips, "these axes pair their values (the gaps) instead of multiplying")
    doc.add("matrix", m)
    axes = tomlkit.table()
    _put(axes, "checkpoint", steps, 'steps of the run\'s checkpoints, "last", or .safetensors paths')
    _put(axes, "weight", [float(w) for w in opts.weights], "LoRA strength; 0 is the base model")
    for name, values in slots.items():
        _put(axes, name, values, None)
    _put(axes, "seed", [int(s) for s in opts.seeds], None)
    doc.add(tomlkit.nl())
    doc.add("axes", axes)
    view = tomlkit.table()
    _put(view, "cols", ["weight"], "what the grid shows across; c in the Matrix tab changes it")
    _put(view, "pages", ["checkpoint"], "one page per checkpoint; z changes it")
    doc.add(tomlkit.nl())
    doc.add("view", view)
    return tomlkit.dumps(doc), run


def _put(table: Any, key: str, value: Any, comment: str | None) -> None:
    item = tomlkit.item(value)
    if comment:
        item.comment(comment)
    table.add(key, item)


def create_matrix(project: Project, opts: NewMatrix) -> MatrixFolder:
    """Write matrices/<id>/matrix.toml (validated first) and return the folder."""
    text, run = build_spec(project, opts)
    parse_spec(text)
    project.matrices_dir.mkdir(parents=True, exist_ok=True)
    name = opts.name or f"{run.id.split('-', 2)[-1]}-matrix"
    folder = MatrixFolder(project.matrices_dir / new_matrix_id(project.matrices_dir, name))
    folder.create()
    atomic_write_text(folder.spec, text)
    return folder


def spec_path(folder: MatrixFolder, project: Project) -> Path:
    try:
        return folder.spec.relative_to(project.root)
    except ValueError:
        return folder.spec
