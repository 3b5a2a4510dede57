"""A ready matrix spec for a project's run: what `lorawb matrix new` and the tab's `n` write.

The run's checkpoints (the latest run with checkpoints by default; at most six, spread over
the run, the last included) × LoRA weights 0, 0.5, 0.75, 1 × the project's contexts and
styles (``[tags.groups]``, else the trigger prompts of its samples) × 2 seeds, plus control
prompts without the trigger (the project's other sample prompts) to measure leakage. With
``fill_gaps`` the prompts are only the context × style pairs the dataset lacks (empty or
thin in the composition table), zipped: the cells worth promoting into the dataset.

``draft_new`` fits that matrix to about ``[matrix] target_minutes`` of drawing at the measured
speed (lorawb.matrix.estimate): it trims, in this order, the seeds to one, contexts × styles to
pairs, the checkpoints, the middle weights, then the prompts, and says what it left out. What the
user gave explicitly (``NewMatrix.fixed``) is never trimmed; a target of 0 keeps the full matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomlkit

from lorawb.core.captions import Caption, tag_key
from lorawb.core.characters import characters_of, group_label, pairs_of
from lorawb.core.fsutil import atomic_write_text
from lorawb.errors import RunError
from lorawb.matrix.cells import Layout, enumerate_cells, prompt_count
from lorawb.matrix.estimate import Speed, format_duration, measured_speed
from lorawb.matrix.folder import MatrixFolder, new_matrix_id
from lorawb.matrix.lorafile import run_checkpoints, spread
from lorawb.matrix.resolve import resolve
from lorawb.matrix.settings import matrix_settings
from lorawb.matrix.spec import MatrixSpec, parse_spec
from lorawb.train.config import load_run_config
from lorawb.train.runfolder import RunFolder, find_run, list_runs
from lorawb.words import plural

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
    minutes: float | None = None  # fit to about this many minutes (None: [matrix] target_minutes; 0: no fitting)
    fixed: frozenset[str] = frozenset()  # what the user set ("weights", "seeds", "checkpoints"): never trimmed
    paired: bool = False  # contexts and styles paired (zip) instead of multiplied
    prompts: int = 0  # at most this many slot values / pairs (0: all)
    pairs: bool = False  # the joint matrix: each pair of characters over the contexts the pair lacks


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


THIN_PAIR = 2  # a pair with fewer joint images than this in a context lacks it


def pair_context_counts(project: Project, contexts: list[str]) -> dict[str, dict[str, int]]:
    """Per pair of characters (``mira+tom``), its joint images in each context (by caption tags)."""
    from lorawb.core.caption_ops import load_captions
    from lorawb.core.characters import characters_in

    chars = characters_of(project.config)
    out = {group_label([a.name, b.name]): dict.fromkeys(contexts, 0) for a, b in pairs_of(chars)}
    keys = {tag_key(c): c for c in contexts}
    dataset = project.dataset_dir.relative_to(project.root).as_posix()
    for f in load_captions(project):
        rel = Path(f.image).parent.as_posix()
        rel = rel[len(dataset) + 1 :] if rel.startswith(dataset + "/") else ""
        tags = Caption.parse(f.text or "").tags
        label = group_label(characters_in(rel, tags, chars))
        if label in out:
            for t in tags:
                if tag_key(t) in keys:
                    out[label][keys[tag_key(t)]] += 1
    return out


def _pair_axes(project: Project, groups: dict[str, list[str]], notes: list[str]) -> tuple[list[str], list[str]]:
    """(character axis values: the pairs, contexts any pair lacks) for ``--pairs``."""
    if len(characters_of(project.config)) < 2:
        raise RunError(
            "--pairs needs two or more characters",
            path=project.config_path,
            hint="add [characters.<name>] tables with their triggers to lorawb.toml",
        )
    contexts = groups.get(SLOT_GROUPS[0]) or []
    if not contexts:
        raise RunError(
            "--pairs needs the contexts ([tags.groups] context = [...]) to find the ones a pair lacks",
            path=project.config_path,
        )
    counts = pair_context_counts(project, contexts)
    lacking = [c for c in contexts if any(n[c] < THIN_PAIR for n in counts.values())]
    for pair, n in counts.items():
        gaps = [c for c in contexts if n[c] < THIN_PAIR]
        notes.append(f"{pair} lacks {', '.join(gaps)}" if gaps else f"{pair} has every context")
    if not lacking:
        notes.append("every pair has every context; testing them all")
        lacking = list(contexts)
    return list(counts), lacking


def build_spec(project: Project, opts: NewMatrix) -> tuple[str, RunFolder, list[str]]:
    """The matrix.toml text (commented) for ``opts``, the run it tests, and notes on what it chose."""
    notes: list[str] = []
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
    chars = characters_of(project.config)
    pair_values: list[str] = []  # the character axis
    if len(chars) > 1 and not opts.pairs:  # several characters: each alone and each pair, same prompts
        pair_values = [c.name for c in chars] + [group_label([a.name, b.name]) for a, b in pairs_of(chars)]
    if opts.pairs:
        pair_values, lacking = _pair_axes(project, groups, notes)
        slots = {SLOT_GROUPS[0]: lacking}
    elif all(g in groups for g in SLOT_GROUPS):
        slots = {g: groups[g] for g in SLOT_GROUPS}
        if opts.paired and not opts.fill_gaps:
            slots = _paired(slots)
            zips = [list(SLOT_GROUPS)]
        if opts.fill_gaps:
            gaps = _gaps(project, groups)
            if gaps:
                slots = {SLOT_GROUPS[0]: [a for a, _ in gaps], SLOT_GROUPS[1]: [b for _, b in gaps]}
                zips = [list(SLOT_GROUPS)]
                notes.append(f"{len(gaps)} context × style pairs the dataset lacks (empty or thin)")
            else:
                notes.append("the dataset has every context × style pair; testing them all")
    elif groups:
        name = next(iter(groups))
        slots = {name: groups[name]}
        if opts.fill_gaps:
            notes.append("--fill-gaps needs context and style groups in [tags.groups]; testing every value")
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
    if opts.prompts > 0:
        slots = (
            {name: values[: opts.prompts] for name, values in slots.items()} if zips else _first(slots, opts.prompts)
        )
    controls = [p for p in prompts if not _names_trigger(p, trigger)]
    if not controls and SLOT_GROUPS[0] in groups:
        controls = groups[SLOT_GROUPS[0]][:2]  # the scene alone, without the character
    if not controls:
        notes.append("no control prompts (sample prompts without the trigger): leak is not measured")
    template = (
        ", ".join(["{trigger}", *(f"{{{s}}}" for s in slots)])
        if trigger or pair_values
        else ", ".join(f"{{{s}}}" for s in slots)
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
    if pair_values:
        _put(m, "pair_template", project.config.characters.pair_template, "a pair's prompt ({context}: the rest)")
        width = _toy_pair_width(cfg)
        if width:
            _put(m, "pair_width", width, "the toy world draws a pair side by side, twice as wide")
    doc.add("matrix", m)
    axes = tomlkit.table()
    _put(axes, "checkpoint", steps, 'steps of the run\'s checkpoints, "last", or .safetensors paths')
    _put(axes, "weight", [float(w) for w in opts.weights], "LoRA strength; 0 is the base model")
    if pair_values:
        _put(axes, "character", pair_values, "a character alone, or a pair (a+b) with the pair template")
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
    return tomlkit.dumps(doc), run, notes


def _toy_pair_width(cfg: Any) -> int:
    """Twice the toy world's width when the run's base model is a toy-world model, else 0 (the width)."""
    from lorawb.train.modelpath import read_json

    if cfg is None or not cfg.model.path:
        return 0
    info = read_json(Path(cfg.model.path) / "lorawb_model.json") if Path(cfg.model.path).is_dir() else {}
    if not info.get("toyworld"):
        return 0
    return 2 * int(info.get("recommended", {}).get("width") or 32)


def _paired(slots: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each value of the longer axis once, beside the other axis's values in turn (a zip, not a product)."""
    n = max(len(v) for v in slots.values())
    return {name: [values[i % len(values)] for i in range(n)] for name, values in slots.items()}


def _first(slots: dict[str, list[str]], n: int) -> dict[str, list[str]]:
    """At most ``n`` prompts from multiplied slot axes: the last axis shortened first."""
    out = {k: list(v) for k, v in slots.items()}
    for name in reversed(list(out)):
        total = 1
        for v in out.values():
            total *= len(v)
        while total > n and len(out[name]) > 1:
            total = total // len(out[name]) * (len(out[name]) - 1)
            out[name] = out[name][:-1]
    return out


def _put(table: Any, key: str, value: Any, comment: str | None) -> None:
    item = tomlkit.item(value)
    if comment:
        item.comment(comment)
    table.add(key, item)


@dataclass
class Draft:
    """A new matrix before it is written: its spec, the run it tests, its cells and what drawing them takes."""

    opts: NewMatrix
    text: str
    run: RunFolder
    spec: MatrixSpec
    layout: Layout
    speed: Speed | None
    notes: list[str]

    @property
    def images(self) -> int:
        return len(self.layout.cells)

    @property
    def seconds(self) -> float | None:
        return None if self.speed is None else self.images * self.speed.seconds_per_image


def draft(project: Project, opts: NewMatrix, speed: Speed | None = None) -> Draft:
    """The spec ``opts`` asks for, as it is (no fitting), enumerated; ``speed`` measured when not given."""
    text, run, notes = build_spec(project, opts)
    spec = parse_spec(text)
    ctx = resolve(spec, project)
    layout = enumerate_cells(spec, ctx.resolved)
    if speed is None:
        speed = measured_speed(project, None, layout, ctx.run)
    return Draft(opts, text, run, spec, layout, speed, notes)


def target_minutes(project: Project, opts: NewMatrix) -> float:
    return matrix_settings(project).target_minutes if opts.minutes is None else max(0.0, opts.minutes)


def draft_new(project: Project, opts: NewMatrix) -> Draft:
    """The new matrix fitted to about ``target_minutes`` of drawing; its notes say what was left out."""
    full = draft(project, opts)
    minutes = target_minutes(project, opts)
    if minutes <= 0 or full.seconds is None or full.seconds <= minutes * 60:
        if minutes > 0 and full.speed is None:
            full.notes.append(f"not fitted to {minutes:g} min: no measured speed yet (the run drew no samples)")
        return full
    d = full
    while d.seconds is not None and d.seconds > minutes * 60:
        smaller = _trim(d)
        if smaller is None:
            break
        d = draft(project, smaller, full.speed)
    d.notes.append(_fitted_note(full, d, minutes, opts.minutes is None))
    return d


def _trim(d: Draft) -> NewMatrix | None:
    """The next smaller matrix: one seed, paired contexts × styles, fewer checkpoints, weights, prompts."""
    o, axes = d.opts, d.layout.axes
    n_ckpts = len(axes["checkpoint"]) if "checkpoint" in axes else 1
    ckpts_free = "checkpoints" not in o.fixed and not o.steps
    if "seeds" not in o.fixed and len(o.seeds) > 1:
        return replace(o, seeds=o.seeds[:1], notes=[])
    if not o.paired and not o.fill_gaps and all(len(axes.get(g, ())) > 1 for g in SLOT_GROUPS):
        return replace(o, paired=True, notes=[])
    if ckpts_free and n_ckpts > 2:
        return replace(o, checkpoints=n_ckpts - 1, notes=[])
    if "weights" not in o.fixed and len(o.weights) > 2:
        return replace(o, weights=(o.weights[0], *o.weights[2:]), notes=[])
    if ckpts_free and n_ckpts > 1:
        return replace(o, checkpoints=n_ckpts - 1, notes=[])
    prompts = prompt_count(d.layout)
    if prompts > 1:
        return replace(o, prompts=prompts - 1, notes=[])
    return None


def _fitted_note(full: Draft, d: Draft, minutes: float, from_settings: bool) -> str:
    left: list[str] = []
    for name, word in (("checkpoint", "checkpoint"), ("weight", "weight"), ("seed", "seed")):
        a, b = full.layout.axes.get(name), d.layout.axes.get(name)
        if a is not None and b is not None and len(b) < len(a):
            left.append(f"{len(b)} of {plural(len(a), word)} ({', '.join(b.labels)})")
    pa, pb = prompt_count(full.layout), prompt_count(d.layout)
    if pb < pa:
        how = " × ".join(d.layout.slots) + " paired" if d.opts.paired else "fewer values"
        left.append(f"{pb} of {plural(pa, 'prompt')} ({how})")
    where = "[matrix] target_minutes" if from_settings else "--minutes"
    fits = "" if d.seconds is None or d.seconds <= minutes * 60 else "; the smallest is still over it"
    return (
        f"fitted to about {minutes:g} min ({where}){fits}: {'; '.join(left)}. "
        f"The full matrix is {plural(full.images, 'image')}, estimated {format_duration(full.seconds or 0)}: "
        "--minutes 0 (minutes 0 in the dialog) makes it"
    )


def create_matrix(project: Project, opts: NewMatrix) -> MatrixFolder:
    """Write matrices/<id>/matrix.toml (fitted, validated) and return the folder; ``opts.notes`` say how."""
    d = draft_new(project, opts)
    opts.notes.extend(d.notes)
    project.matrices_dir.mkdir(parents=True, exist_ok=True)
    name = opts.name or f"{d.run.id.split('-', 2)[-1]}-matrix"
    folder = MatrixFolder(project.matrices_dir / new_matrix_id(project.matrices_dir, name))
    folder.create()
    atomic_write_text(folder.spec, d.text)
    return folder


def spec_path(folder: MatrixFolder, project: Project) -> Path:
    try:
        return folder.spec.relative_to(project.root)
    except ValueError:
        return folder.spec
