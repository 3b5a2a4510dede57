"""One-change sweeps: runs that each differ from the project's settings in one setting, each
followed by the same matrix, queued on the machine's queue.

``lorawb sweep NAME --vary train.learning_rate=1e-4,2e-4 --vary network.rank=8,16`` makes one
run per value, one setting at a time around the base (``--product``: every combination), checks
that each run's frozen config differs from the base in exactly the settings it names, and queues
``train`` → ``matrix`` for each (the matrix waits for its run). The matrix is the one given
(``--matrix``) or one written like `matrix new` for the first run that finishes; every run gets
a copy with its own run id.

    sweeps/<name>/
      sweep.json       the plan: base overrides, what varies, one entry per run (label, settings, jobs)
      matrix.toml      the matrix every run is tested with (its ``run`` is replaced per run)
      members.jsonl    the folders the queue made: {"label", "kind", "folder", "job"} per line
      report.png       `lorawb sweep report NAME` (lorawb.sweep.report, lorawb.sweep.chart)
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomlkit

from lorawb.core.fsutil import atomic_write_text
from lorawb.core.refs import pick
from lorawb.core.tomlio import parse_override
from lorawb.errors import ConfigError, LorawbError
from lorawb.train.compare import config_diff, format_value

if TYPE_CHECKING:
    from lorawb.core.project import Project
    from lorawb.queue.store import Job
    from lorawb.train.config import TrainConfig

PLAN = "sweep.json"
MEMBERS = "members.jsonl"
TEMPLATE = "matrix.toml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SweepError(LorawbError):
    """A sweep cannot be planned or read."""


def sweeps_dir(project: Project) -> Path:
    return project.root / "sweeps"


@dataclass
class Variant:
    """One run of the sweep: the settings it changes from the base (none: the base itself)."""

    label: str
    changes: dict[str, Any] = field(default_factory=dict)  # key -> value (parsed)
    raw: dict[str, str] = field(default_factory=dict)  # key -> value as written

    @property
    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.raw.items()]


@dataclass
class SweepPlan:
    name: str
    base_overrides: list[str]
    config_file: str | None
    vary: dict[str, list[str]]
    product: bool
    variants: list[Variant]
    configs: list[TrainConfig] = field(repr=False, default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_vary(text: str) -> tuple[str, list[str]]:
    """``train.learning_rate=1e-4,2e-4`` → (key, ["1e-4", "2e-4"])."""
    key, sep, values = text.partition("=")
    key = key.strip()
    raw = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key or not raw:
        raise ConfigError(f"--vary {text!r}: write KEY=VALUE,VALUE, e.g. train.learning_rate=1e-4,2e-4")
    if len(set(raw)) != len(raw):
        raise ConfigError(f"--vary {text!r}: a value is given twice")
    return key, raw


def _labels(keys: list[str]) -> dict[str, str]:
    """The shortest unambiguous name of each key: ``learning_rate``, or ``train.learning_rate`` on a clash."""
    short = {k: k.rsplit(".", 1)[-1] for k in keys}
    clash = {s for s in short.values() if list(short.values()).count(s) > 1}
    return {k: (k if short[k] in clash else short[k]) for k in keys}


def variants(vary: dict[str, list[str]], product: bool) -> list[Variant]:
    """One value at a time around the base, or (``product``) every combination."""
    names = _labels(list(vary))
    out: list[Variant] = []
    if product:
        keys = list(vary)
        for combo in itertools.product(*(vary[k] for k in keys)):
            raw = dict(zip(keys, combo, strict=True))
            out.append(Variant(" ".join(f"{names[k]}={v}" for k, v in raw.items()), raw=raw))
    else:
        for key, values in vary.items():
            out += [Variant(f"{names[key]}={v}", raw={key: v}) for v in values]
    for v in out:
        v.changes = {k: parse_override(f"{k}={r}")[1] for k, r in v.raw.items()}
    return out


def plan_sweep(
    project: Project,
    name: str,
    vary: list[str],
    *,
    product: bool = False,
    config_file: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> SweepPlan:
    """Every run's resolved config, checked: each differs from the base in exactly the settings it names."""
    from lorawb.train.config import resolve_config

    if not NAME_RE.match(name):
        raise ConfigError(f"sweep name {name!r}: use letters, digits, '-', '_' or '.'")
    if (sweeps_dir(project) / name).exists():
        raise SweepError(
            f"there is already a sweep {name!r}", path=sweeps_dir(project) / name, hint="pick another name"
        )
    if not vary:
        raise ConfigError("a sweep needs at least one --vary KEY=VALUE,VALUE")
    parsed: dict[str, list[str]] = {}
    for text in vary:
        key, values = parse_vary(text)
        if key in parsed:
            raise ConfigError(f"--vary {key} is given twice", hint="list all its values in one --vary")
        parsed[key] = values
    base = resolve_config(project, config_file, list(overrides))
    base_plain = base.model_dump(mode="json")
    plan = SweepPlan(name, list(overrides), config_file, parsed, product, [])
    seen: dict[str, Variant] = {}
    for v in variants(parsed, product):
        cfg = resolve_config(project, config_file, [*overrides, *v.overrides])
        diff = {row.key for row in config_diff(base_plain, cfg.model_dump(mode="json"))}
        unexpected = sorted(diff - set(v.raw))
        if unexpected:
            raise ConfigError(
                f"--vary {v.label}: the run would also change {', '.join(unexpected)}",
                hint="a sweep changes one setting at a time; set the others with --set so every run shares them",
            )
        same = sorted(set(v.raw) - diff)
        if same and not diff:  # every value it names is the base's own: this is the base run
            v = Variant(f"{v.label} (base)" if len(v.raw) == 1 else "base", {}, {})
        elif same:
            plan.notes.append(f"{v.label}: {', '.join(same)} is the base's own value")
        text = cfg.to_toml()
        if text in seen:
            continue  # the same run twice (the base value in two --vary): once is enough
        seen[text] = v
        plan.variants.append(v)
        plan.configs.append(cfg)
    if len(plan.variants) < 2:
        raise ConfigError("the sweep has fewer than two different runs", hint="give at least two values")
    return plan


@dataclass
class MatrixOptions:
    """How the sweep's matrix is written when none is given (`matrix new`'s options)."""

    weights: tuple[float, ...] = (0.0, 0.5, 0.75, 1.0)
    seeds: tuple[int, ...] = (0, 1)
    checkpoints: int = 6


def create_sweep(
    project: Project,
    plan: SweepPlan,
    *,
    matrix_text: str | None = None,
    options: MatrixOptions | None = None,
    qdir: Path | None = None,
) -> list[Job]:
    """Write sweeps/<name>/ and queue train → matrix for every run; returns the queued jobs."""
    from lorawb.matrix.spec import parse_spec
    from lorawb.queue import enqueue, queue_train

    folder = sweeps_dir(project) / plan.name
    if matrix_text is not None:
        parse_spec(matrix_text)
    folder.mkdir(parents=True, exist_ok=False)
    if matrix_text is not None:
        atomic_write_text(folder / TEMPLATE, matrix_text)
    opts = asdict(options or MatrixOptions())
    record: dict[str, Any] = {
        "name": plan.name,
        "created": time.time(),
        "config_file": plan.config_file,
        "base_overrides": plan.base_overrides,
        "vary": plan.vary,
        "product": plan.product,
        "matrix_options": opts,
        "runs": [],
    }
    jobs = []
    for v, cfg in zip(plan.variants, plan.configs, strict=True):
        params = {"sweep": str(folder.resolve()), "label": v.label}
        train = queue_train(project, cfg, _run_name(plan.name, v), params=params, qdir=qdir, start=False)
        title = f"matrix of {plan.name} · {v.label}"
        matrix = enqueue(
            project, "matrix", title, params={**params, "matrix_options": opts}, after=train.id, qdir=qdir, start=False
        )
        jobs += [train, matrix]
        record["runs"].append(
            {
                "label": v.label,
                "changes": {k: format_value(x) for k, x in v.changes.items()},
                "train_job": train.id,
                "matrix_job": matrix.id,
            }
        )
    atomic_write_text(folder / PLAN, json.dumps(record, indent=1) + "\n")
    from lorawb.queue.runner import ensure_runner

    ensure_runner(qdir)
    return jobs


def _run_name(sweep: str, v: Variant) -> str:
    return f"{sweep}-{v.label.replace(' (base)', '-base')}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


# --- what the runner calls --------------------------------------------------------------------------


def record_member(job: Job) -> None:
    """Note in the sweep that ``job`` writes ``job.folder`` (one line appended; readers skip a half line)."""
    from lorawb.train.events import EventWriter

    sweep = Path(job.params["sweep"])
    with EventWriter(sweep / MEMBERS) as w:
        w.emit("member", label=job.params.get("label", ""), kind=job.kind, folder=job.folder, job=job.id)


def make_matrix(job: Job, run_folder: Path) -> Path:
    """The sweep's matrix for one finished run: the template (written now for the first run when the
    sweep was given none), with this run's id and, when it lacks a checkpoint the template names, its own."""
    from lorawb.core.project import Project
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.lorafile import run_checkpoints, spread
    from lorawb.matrix.new import NewMatrix, build_spec
    from lorawb.matrix.spec import parse_spec
    from lorawb.train.runfolder import RunFolder

    project = Project.load(job.project)
    sweep = Path(job.params["sweep"])
    run = RunFolder(run_folder)
    template = sweep / TEMPLATE
    if not template.is_file():
        o = job.params.get("matrix_options", {})
        opts = NewMatrix(
            run=str(run.path),
            weights=tuple(o.get("weights", MatrixOptions.weights)),
            seeds=tuple(o.get("seeds", MatrixOptions.seeds)),
            checkpoints=int(o.get("checkpoints", MatrixOptions.checkpoints)),
        )
        _write_once(template, build_spec(project, opts)[0])
    doc = tomlkit.parse(template.read_text(encoding="utf-8"))
    doc["matrix"]["run"] = run.id  # type: ignore[index]
    axes = doc.get("axes", {})
    wanted = list(axes.get("checkpoint", []))
    have = run_checkpoints(run)
    steps = {c.step for c in have}
    if wanted and have and any(isinstance(s, int) and s not in steps for s in wanted):
        axes["checkpoint"] = [c.step for c in spread(have, len(wanted))]  # type: ignore[index]
    text = tomlkit.dumps(doc)
    parse_spec(text)
    name = _slug(f"{sweep.name}-{job.params.get('label', job.id)}")
    for n in itertools.count(1):
        folder = MatrixFolder(project.matrices_dir / (name if n == 1 else f"{name}-{n}"))
        if not folder.spec.exists():
            break
        if _spec_run(folder.spec) == run.id:
            return folder.path  # made for this run by a start that was interrupted
    folder.create()
    atomic_write_text(folder.spec, text)
    return folder.path


def _spec_run(path: Path) -> str:
    try:
        return str(tomlkit.parse(path.read_text(encoding="utf-8")).get("matrix", {}).get("run", ""))
    except Exception:  # an unreadable spec is not ours
        return ""


def _write_once(path: Path, text: str) -> None:
    """Write ``path`` unless it exists (two matrix jobs starting at once write one template)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        os.link(tmp, path)  # fails when the other one was first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def list_sweeps(project: Project) -> list[Path]:
    d = sweeps_dir(project)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if (p / PLAN).is_file()), key=lambda p: (p.stat().st_mtime, p.name))


def find_sweep(project: Project, ref: str) -> Path:
    """A sweep by name, unique prefix, or 'last'."""
    return pick(
        list_sweeps(project),
        ref,
        lambda p: p.name,
        what=("sweep", "sweeps"),
        where=sweeps_dir(project),
        hint="`lorawb sweep list` lists them",
        error=SweepError,
    )


def read_plan(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / PLAN).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SweepError(f"cannot read the sweep: {exc}", path=folder / PLAN) from exc


def read_members(folder: Path) -> dict[tuple[str, str], str]:
    """{(label, kind): folder} as the queue recorded them (the latest per pair)."""
    from lorawb.train.events import read_events

    path = folder / MEMBERS
    out: dict[tuple[str, str], str] = {}
    for e in read_events(path) if path.is_file() else []:
        if e.get("type") == "member" and e.get("folder"):
            out[(str(e.get("label", "")), str(e.get("kind", "")))] = str(e["folder"])
    return out
