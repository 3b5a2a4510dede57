"""What a matrix spec's names mean in its project: the base model, the run's checkpoints, defaults.

``resolve`` turns ``checkpoint = [50, "last", "other.safetensors"]`` into LoRA files, finds the
base model (the spec's, else the run's, else the project's ``[model]``) and fills the zero
defaults (size, steps, guidance) from the model's recommendation, like the trainer's samples
do. Errors name the spec key and line. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lorawb import families
from lorawb.errors import ConfigError, LorawbError
from lorawb.matrix.cells import LoraRef, Resolved
from lorawb.matrix.lorafile import RunCheckpoint, check_family, read_lora, run_checkpoints
from lorawb.matrix.spec import MatrixSpec
from lorawb.train.config import ModelSection, TrainConfig, load_run_config, resolve_config
from lorawb.train.modelpath import check_model_path, detect_family, read_json
from lorawb.train.runfolder import RunFolder, find_run

if TYPE_CHECKING:
    from lorawb.core.project import Project


@dataclass(frozen=True)
class Context:
    """A resolved spec: the enumeration inputs, the base model to load, the run (if any)."""

    resolved: Resolved
    model: ModelSection
    family: str
    run: RunFolder | None
    recommended: dict
    toyworld: bool  # the base model is a toy-world model: its reader can score the cells
    settings: dict = field(default_factory=dict)  # the family's section of the run's (or project's) config


def rel_to_project(project: Project, path: Path) -> str:
    """A path as a cell records it: relative to the project when inside it (so a moved project keeps its ids)."""
    p = Path(path).absolute()
    try:
        return p.relative_to(project.root.absolute()).as_posix()
    except ValueError:
        return str(p)


def spec_run(spec: MatrixSpec, project: Project) -> RunFolder | None:
    if not spec.matrix.run:
        return None
    try:
        return find_run(project.runs_dir, spec.matrix.run)
    except LorawbError as exc:
        raise spec.error("matrix.run", exc.message, hint=exc.hint) from exc


def training_config(spec: MatrixSpec, project: Project, run: RunFolder | None) -> TrainConfig:
    """The config whose base model the matrix draws: the run's frozen one, else the project's;
    ``matrix.base_model`` replaces its model."""
    cfg = load_run_config(run.config) if run is not None and run.config.is_file() else resolve_config(project)
    if spec.matrix.base_model:
        model = cfg.model.model_copy(update={"path": str(project.resolve(spec.matrix.base_model)), "family": "auto"})
        cfg = cfg.model_copy(update={"model": model})
    return cfg


def resolve_checkpoints(spec: MatrixSpec, project: Project, run: RunFolder | None, family: str) -> list[LoraRef | None]:
    values = spec.axes.get("checkpoint")
    ckpts: list[RunCheckpoint] = run_checkpoints(run) if run is not None else []
    if values is None:
        if run is None:
            return [None]
        values = ["last"]
    out: list[LoraRef | None] = []
    for v in values:
        if isinstance(v, int) or (isinstance(v, str) and v.strip().lower() == "last"):
            if run is None:
                raise spec.error(
                    "axes.checkpoint", f"{v!r} names a run's checkpoint, but matrix.run is empty", hint="set matrix.run"
                )
            if not ckpts:
                raise spec.error(
                    "axes.checkpoint", f"run {run.id} has no checkpoints yet", hint="wait for its first save"
                )
            if isinstance(v, int):
                hit = next((c for c in ckpts if c.step == v), None)
                if hit is None:
                    steps = ", ".join(str(c.step) for c in ckpts)
                    raise spec.error("axes.checkpoint", f"run {run.id} has no checkpoint at step {v} (it has {steps})")
            else:
                hit = ckpts[-1]
            path, label, step = hit.path, f"step {hit.step}", hit.step
        else:
            path = _find_file(str(v), project, spec, run)
            info = read_lora(path)
            step = info.step
            label = Path(v).stem
        try:
            check_family(read_lora(path), family)
        except LorawbError as exc:
            raise spec.error("axes.checkpoint", exc.message, hint=exc.hint) from exc
        out.append(LoraRef(rel_to_project(project, path), label, step))
    return out


def resolve_stacks(spec: MatrixSpec, project: Project, family: str) -> list[tuple[tuple[LoraRef, float], ...]]:
    """The loras axis: each value's files (found as checkpoint files are) with their weights."""
    from lorawb.matrix.spec import lora_entry

    out = []
    for group in spec.axes.get("loras", []):
        stack = []
        for entry in group:
            value, weight = lora_entry(entry)
            path = _find_file(value, project, spec, None, key="axes.loras")
            try:
                info = read_lora(path)
                check_family(info, family)
            except LorawbError as exc:
                raise spec.error("axes.loras", f"{value}: {exc.message}", hint=exc.hint) from exc
            stack.append((LoraRef(rel_to_project(project, path), Path(value).stem, info.step), weight))
        out.append(tuple(stack))
    return _distinct_labels(out)


def _distinct_labels(stacks: list[tuple[tuple[LoraRef, float], ...]]) -> list[tuple[tuple[LoraRef, float], ...]]:
    """Files of the same name from different folders (two runs' ``p-000400.safetensors``) are told
    apart by their folder: ``A/p-000400``; the summary and the tab name each value by its labels."""
    paths: dict[str, set[str]] = {}
    for stack in stacks:
        for ref, _ in stack:
            paths.setdefault(ref.label, set()).add(ref.path)
    clash = {label for label, seen in paths.items() if len(seen) > 1}
    if not clash:
        return stacks

    def named(ref: LoraRef) -> LoraRef:
        if ref.label not in clash:
            return ref
        return LoraRef(ref.path, f"{Path(ref.path).parent.name}/{ref.label}", ref.step)

    return [tuple((named(r), w) for r, w in stack) for stack in stacks]


def resolve_characters(spec: MatrixSpec, project: Project) -> tuple[tuple[str, str], ...]:
    """The project's characters (name, trigger); each character axis value must name them."""
    from lorawb.core.characters import characters_of

    chars = tuple((c.name, c.trigger) for c in characters_of(project.config))
    known = dict(chars)
    for value in spec.axes.get("character", []):
        names = [n.strip() for n in str(value).split("+")]
        for n in names:
            if n not in known:
                raise spec.error(
                    "axes.character",
                    f"{n!r} is not a character of this project",
                    hint="characters: " + (", ".join(known) or "none ([characters.<name>] in lorawb.toml)"),
                )
        if len(names) > 2 or len(set(names)) != len(names):
            raise spec.error("axes.character", f"{value!r}: a value is one character or a pair (a+b)")
    return chars


def _find_file(
    value: str, project: Project, spec: MatrixSpec, run: RunFolder | None, key: str = "axes.checkpoint"
) -> Path:
    raw = Path(value).expanduser()
    candidates = [raw] if raw.is_absolute() else [project.root / raw]
    if spec.path is not None and not raw.is_absolute():
        candidates.append(spec.path.parent / raw)
    if run is not None and not raw.is_absolute():
        candidates.append(run.checkpoints / raw)
    for c in candidates:
        if c.is_file():
            return c
    raise spec.error(
        key,
        f"no LoRA file {value!r}",
        hint='a path relative to the project (or to matrix.toml), a step of matrix.run, or "last"',
    )


def resolve(spec: MatrixSpec, project: Project) -> Context:
    """The spec resolved in ``project`` (ConfigError/ModelError name what is wrong)."""
    run = spec_run(spec, project)
    trained = training_config(spec, project, run)
    model = trained.model
    try:
        base = check_model_path(model)
        family = detect_family(base, model.family)
    except LorawbError as exc:
        key = "matrix.base_model" if spec.matrix.base_model else ("matrix.run" if run else "matrix")
        raise ConfigError(f"{key}: {exc.message}", path=spec.path, line=spec.line_of(key), hint=exc.hint) from exc
    m = spec.matrix
    resolution = project.config.project.resolution
    if run is not None and run.config.is_file():
        resolution = load_run_config(run.config).dataset.resolution or resolution
    d = model_defaults(base, family, resolution, width=m.width, height=m.height, steps=m.steps, cfg=m.cfg)
    resolved = Resolved(
        base=rel_to_project(project, base),
        trigger=m.trigger or project.trigger,
        width=d.width,
        height=d.height,
        steps=d.steps,
        cfg=d.cfg,
        sampler=m.sampler,
        checkpoints=tuple(resolve_checkpoints(spec, project, run, family)),
        characters=resolve_characters(spec, project),
        pair_template=m.pair_template or project.config.characters.pair_template,
        pair_width=_size(m.pair_width) if m.pair_width else 0,
        stacks=tuple(resolve_stacks(spec, project, family)),
    )
    return Context(resolved, model, family, run, d.recommended, d.toyworld, families.family_settings(trained))


@dataclass(frozen=True)
class ModelDefaults:
    """How a base model draws when the user does not say: size, steps, guidance, and what it is."""

    width: int
    height: int
    steps: int
    cfg: float
    recommended: dict
    toyworld: bool  # a toy-world model: its reader can score what it draws


def model_defaults(
    base: Path, family: str, resolution: int, *, width: int = 0, height: int = 0, steps: int = 0, cfg: float = 0.0
) -> ModelDefaults:
    """Each setting as given, else the model's recommendation (its lorawb_model.json), else the project's
    resolution, 20 steps and the family's guidance."""
    info = read_json(base / "lorawb_model.json") if base.is_dir() else {}
    rec = dict(info.get("recommended", {}))
    return ModelDefaults(
        width=_size(width or rec.get("width") or resolution),
        height=_size(height or rec.get("height") or resolution),
        steps=int(steps or rec.get("steps") or 20),
        cfg=float(cfg or rec.get("cfg") or families.get(family).default_cfg),
        recommended=rec,
        toyworld=bool(info.get("toyworld")),
    )


def _size(px: int | float) -> int:
    return max(8, int(px) // 8 * 8)
