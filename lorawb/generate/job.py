"""`lorawb generate`: the plan of a generate job, the job itself, and regenerating a candidate.

``plan_generate`` turns the character sheet (``[generate]``), the options and the project's
model into every candidate to draw (lorawb.generate.grid), each with every parameter of its
image and a stable id (a hash of them): ``gen-<what varies>-<hash>``. The job is an image job
like `lorawb reg generate` (lorawb.matrix.imagejob: detached, locked, stoppable, a rerun or a
resume after ``kill -9`` draws only what is missing) in ``.lorawb/generate/``. Each candidate
becomes ``inbox/<id>.png`` with its caption ``inbox/<id>.txt`` (written first: never an
uncaptioned image) and its record: in the PNG's text (A1111's ``parameters`` and lorawb's
JSON, as matrix cells carry theirs) and in ``.lorawb/generate/candidates.jsonl``. A candidate
counts as drawn when it has a record or its PNG is in the inbox or the dataset (kept or
rejected), so triaging never makes a rerun draw it again. When every candidate is drawn the
pre-sort scores them (lorawb.generate.presort).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb.core import layout as files
from lorawb.core.fsutil import atomic_write_bytes, atomic_write_text
from lorawb.core.project import STATE_DIR, Project
from lorawb.errors import ConfigError, LorawbError
from lorawb.matrix import imagejob
from lorawb.matrix.imagejob import ImageJob, JobStatus, ProgressFn

if TYPE_CHECKING:
    import logging

    from lorawb.families import Helper
    from lorawb.matrix.cells import Params
    from lorawb.matrix.generate import Generator
    from lorawb.matrix.requests import ImageRequest
    from lorawb.train.events import EventWriter

KIND = "generate"
PREFIX = "gen"


class GenerateJob(ImageJob):
    """The project's generate job (``.lorawb/generate/``)."""

    worker_name = "candidate generator"
    job_name = "generate job"
    stop_command = "lorawb generate --stop"

    candidates_log = property(lambda self: self.path / "candidates.jsonl")
    scores_log = property(lambda self: self.path / "scores.jsonl")
    poses_dir = property(lambda self: self.path / "poses")

    @classmethod
    def of(cls, project: Project, kind: str = KIND) -> GenerateJob:
        return cls(project.root / STATE_DIR / kind)


@dataclass
class GenerateOptions:
    """What `lorawb generate` (or G in Triage) asks for on top of the sheet."""

    count: int = 0  # images per combination (0: the sheet's count)
    helper: str = ""  # ip-adapter, controlnet, edit, none ("": the sheet's)
    lora: str = ""  # a LoRA file: v1 → v2, the composition gaps drawn with it
    lora_weight: float | None = None  # None: the sheet's lora_weight


@dataclass
class GeneratePlan:
    """Everything a generate job draws (plan.json): the model, the settings, every candidate."""

    root: str  # the project folder (absolute)
    model: dict[str, Any]  # the [model] section the generator loads (the edit model with --with edit)
    family: str
    base: str  # the model path as records name it (project-relative where inside)
    trigger: str
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str
    negative: str
    batch: int
    toyworld: bool
    candidates: list[dict[str, Any]]
    lora: dict[str, Any] | None = None  # {"path" (as recorded), "file" (absolute), "label", "weight"}
    helper: dict[str, Any] | None = None  # Helper's fields (absolute paths) and how records name them
    notes: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    settings: dict[str, Any] = field(default_factory=dict)  # the model family's section of the config

    # --- what exists -------------------------------------------------------------------------------
    @cached_property
    def project(self) -> Project:
        return Project.load(self.root)

    @property
    def total(self) -> int:
        return len(self.candidates)

    def job(self) -> GenerateJob:
        return GenerateJob(Path(self.root) / STATE_DIR / KIND)

    def drawn(self) -> set[str]:
        """Ids drawn before: recorded, or a PNG of that name in the inbox or the dataset (triaged)."""
        from lorawb.matrix.folder import read_rows

        project = self.project
        done = set(read_rows(self.job().candidates_log, "candidate"))
        for folder in (project.inbox_dir, project.dataset_dir):
            if folder.is_dir():
                done |= {p.stem for p in files.walk_images(folder, skip_rejected=False) if p.stem.startswith(PREFIX)}
        return done

    def missing(self) -> list[dict[str, Any]]:
        done = self.drawn()
        return [c for c in self.candidates if c["id"] not in done]

    # --- drawing (lorawb.matrix.imagejob.Drawing) --------------------------------------------------
    def helper_spec(self) -> Helper | None:
        from lorawb.families import Helper

        h = self.helper
        return None if h is None else Helper(h["kind"], h.get("path", ""), h.get("encoder", ""), h.get("scale", 1.0))

    def generator(self, log: logging.Logger) -> Generator:
        from lorawb.matrix.generate import Generator
        from lorawb.train.config import ModelSection

        repaired = repair_records(self)
        if repaired:
            log.info("%d candidates had lost their records; restored from their PNGs", repaired)
        gen = Generator.load(ModelSection(**self.model), settings=self.settings)
        helper = self.helper_spec()
        if helper is not None:
            gen.use_helper(helper)
        log.info(
            "drawing %d candidates at %dx%d, %d steps, guidance %g%s%s",
            len(self.missing()),
            self.width,
            self.height,
            self.steps,
            self.cfg,
            f", with {helper.kind}" if helper else "",
            f", LoRA {self.lora['label']} at {self.lora['weight']:g}" if self.lora else "",
        )
        self.project.inbox_dir.mkdir(parents=True, exist_ok=True)
        return gen

    def params(self, c: dict[str, Any]) -> Params:
        """The candidate's image parameters, as matrix cells record theirs."""
        from lorawb.matrix.cells import LoraRef, Params

        lora = self.lora
        return Params(
            base=self.base,
            lora=LoraRef(lora["path"], lora["label"]) if lora else None,
            weight=float(lora["weight"]) if lora else 0.0,
            prompt=c["prompt"],
            negative=self.negative,
            seed=int(c["seed"]),
            cfg=self.cfg,
            steps=self.steps,
            sampler=self.sampler,
            width=self.width,
            height=self.height,
        )

    def request(self, c: dict[str, Any]) -> ImageRequest:
        helper_input = ""
        if self.helper is not None:
            helper_input = str(pose_image(self, c["pose"])) if c.get("pose") else str(Path(self.root) / c["reference"])
        lora = self.lora["file"] if self.lora else ""
        return image_request(self.params(c).as_dict(), lora, self.helper["kind"] if self.helper else "", helper_input)

    def save(self, c: dict[str, Any], image: Any, batch: Sequence[dict[str, Any]], index: int, gen: Generator) -> str:
        from lorawb.matrix.pngtext import png_bytes
        from lorawb.train.events import EventWriter

        project = self.project
        rec = record(self, c, [b["id"] for b in batch], index, gen)
        png = project.root / rec["file"]
        atomic_write_text(png.with_suffix(".txt"), c["caption"] + "\n")  # the caption first: never uncaptioned
        atomic_write_bytes(png, png_bytes(image, rec))
        with EventWriter(self.job().candidates_log) as rows:
            rows.emit("candidate", **rec)
        return rec["file"]

    def finish(self, events: EventWriter, log: logging.Logger) -> None:
        from lorawb.generate.presort import score_candidates

        try:
            done = score_candidates(self.project, self.records(), self.context(), self.job().scores_log)
        except LorawbError as exc:  # the candidates are drawn; only their order is missing
            log.warning("the pre-sort could not score the candidates: %s", exc)
            events.emit("scored", scored=0, reason=str(exc))
            return
        log.info("pre-sort: %s", done.describe())
        events.emit("scored", scored=done.scored, scorer=done.scorer, reference=done.reference, reason=done.reason)

    # --- records ------------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """The records of this plan's candidates (from candidates.jsonl), in plan order."""
        from lorawb.matrix.folder import read_rows

        rows = read_rows(self.job().candidates_log, "candidate")
        return [rows[c["id"]] for c in self.candidates if c["id"] in rows]

    def context(self) -> Any:
        """The plan as a matrix context (what the scorers are told about the model)."""
        from lorawb.matrix.cells import LoraRef, Resolved
        from lorawb.matrix.resolve import Context
        from lorawb.train.config import ModelSection

        lora = LoraRef(self.lora["path"], self.lora["label"]) if self.lora else None
        resolved = Resolved(
            self.base, self.trigger, self.width, self.height, self.steps, self.cfg, self.sampler, (lora,)
        )
        return Context(resolved, ModelSection(**self.model), self.family, None, {}, self.toyworld)


# --- planning -------------------------------------------------------------------------------------


def _slug(values: Sequence[str], limit: int = 48) -> str:
    text = "-".join(re.sub(r"[^a-z0-9]+", "_", v.lower()).strip("_") for v in values if v)
    return text[:limit].rstrip("-_") or "base"


def candidate_id(values: Sequence[str], key: dict[str, Any]) -> str:
    """``gen-<what varies>-<hash of every parameter>``: the file stem, and the id records use."""
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{PREFIX}-{_slug(values)}-{hashlib.sha1(blob.encode('utf-8')).hexdigest()[:10]}"


def _sheet_path(project: Project, key: str, value: str, what: str) -> Path:
    if not value:
        raise ConfigError(
            f"generate.{key}: --with needs {what}",
            path=project.config_path,
            hint=f"set [generate] {key} to a local path (nothing is downloaded)",
        )
    path = project.resolve(value)
    if not path.exists():
        raise ConfigError(f"generate.{key}: no such file or folder", path=path, hint=f"[generate] {key} names {what}")
    return path


def _ip_adapter_files(project: Project) -> tuple[Path, Path]:
    """(the adapter .safetensors, its image encoder folder) from [generate]."""
    sheet = project.config.generate
    path = _sheet_path(project, "ip_adapter", sheet.ip_adapter, "an IP-Adapter .safetensors file")
    if path.is_dir():
        found = sorted(p for p in path.glob("*.safetensors") if "ip" in p.name.lower())
        if len(found) != 1:
            raise ConfigError(
                f"generate.ip_adapter: {len(found)} IP-Adapter files in this folder",
                path=path,
                hint="name the .safetensors file itself",
            )
        path = found[0]
    if sheet.image_encoder:
        encoder = _sheet_path(project, "image_encoder", sheet.image_encoder, "a CLIP image encoder folder")
    else:
        near = [path.parent / "image_encoder", path.parent.parent / "image_encoder"]
        encoder = next((p for p in near if (p / "config.json").is_file()), near[0])
        if not (encoder / "config.json").is_file():
            raise ConfigError(
                "generate.image_encoder: no image_encoder/ folder beside the IP-Adapter",
                path=path.parent,
                hint="set [generate] image_encoder to its CLIP image encoder folder",
            )
    return path, encoder


def plan_generate(project: Project, opts: GenerateOptions | None = None) -> GeneratePlan:
    """Every candidate of the project's character sheet with these options (nothing drawn)."""
    from lorawb import families
    from lorawb.core.caption_ops import load_captions
    from lorawb.core.composition import pair_gaps
    from lorawb.generate.grid import variation_grid
    from lorawb.matrix.resolve import model_defaults, rel_to_project
    from lorawb.train.config import resolve_config
    from lorawb.train.modelpath import check_model_path, detect_family

    opts = opts or GenerateOptions()
    sheet = project.config.generate
    helper = opts.helper or sheet.helper
    if helper not in ("none", "ip-adapter", "controlnet", "edit"):
        raise ConfigError(f"--with {helper!r}: one of none, ip-adapter, controlnet, edit")
    if opts.count < 0:
        raise ConfigError("--count must be at least 1")
    cfg = resolve_config(project)
    model = cfg.model
    if helper == "edit":
        edit = _sheet_path(project, "edit_model", sheet.edit_model, "a reference-editing model (e.g. Flux.1 Kontext)")
        model = model.model_copy(update={"path": str(edit), "family": "auto"})
    if not model.path:
        raise ConfigError(
            "no base model: set [model] path in lorawb.toml",
            path=project.config_path,
            hint="the candidates are drawn by the model you will train on",
        )
    base = check_model_path(model)
    family = detect_family(base, model.family)
    spec = families.get(family)
    notes: list[str] = []

    helper_fields: dict[str, Any] | None = None
    if helper != "none":
        if helper not in spec.helpers:
            from lorawb.families import helper_missing

            raise helper_missing(spec, helper)
        if helper == "ip-adapter":
            adapter, encoder = _ip_adapter_files(project)
            helper_fields = {
                "kind": helper,
                "path": str(adapter),
                "encoder": str(encoder),
                "scale": sheet.ip_adapter_scale,
                "recorded": {"path": rel_to_project(project, adapter), "encoder": rel_to_project(project, encoder)},
            }
        elif helper == "controlnet":
            net = _sheet_path(project, "controlnet", sheet.controlnet, "an OpenPose ControlNet folder")
            helper_fields = {
                "kind": helper,
                "path": str(net),
                "scale": sheet.controlnet_scale,
                "recorded": {"path": rel_to_project(project, net)},
            }
        else:
            helper_fields = {"kind": helper, "scale": 1.0, "recorded": {"path": rel_to_project(project, base)}}

    lora: dict[str, Any] | None = None
    if opts.lora:
        lora = _lora(project, opts.lora, family, sheet.lora_weight if opts.lora_weight is None else opts.lora_weight)

    trigger = sheet.trigger or project.trigger
    groups = {k: list(v) for k, v in project.config.tags.groups.items() if v}
    axes = sheet.axes(groups)
    pairs: list[tuple[str, str]] = []
    if lora is not None:
        if "context" in axes and "style" in axes:
            pairs = pair_gaps(load_captions(project), ("context", axes["context"]), ("style", axes["style"]))
            notes.append(
                f"{len(pairs)} context × style pairs the dataset lacks (empty or thin)"
                if pairs
                else "the dataset has every context × style pair; drawing them all"
            )
        else:
            notes.append("no contexts and styles to find gaps in; drawing every combination")
    refs_dir = project.resolve(sheet.refs)
    refs = [rel_to_project(project, p) for p in files.walk_images(refs_dir)] if refs_dir.is_dir() else []
    d = model_defaults(
        base,
        family,
        cfg.dataset.resolution,
        width=sheet.width,
        height=sheet.height or sheet.width,
        steps=sheet.steps,
        cfg=sheet.cfg,
    )
    sampler = sheet.sampler or ("euler" if spec.kind == "flow" else cfg.sample.scheduler)
    negative = sheet.negative or cfg.sample.negative
    grid = variation_grid(
        sheet,
        groups,
        trigger,
        count=opts.count,
        lora=lora is not None,
        helper=helper,
        refs=refs,
        pairs=pairs,
        seed=sheet.seed,
    )
    plan = GeneratePlan(
        root=str(project.root.resolve()),
        model=model.model_dump(mode="json"),
        settings=families.family_settings(cfg),
        family=family,
        base=rel_to_project(project, base),
        trigger=trigger,
        width=d.width,
        height=d.height,
        steps=d.steps,
        cfg=d.cfg,
        sampler=sampler,
        negative=negative,
        batch=sheet.batch,
        toyworld=d.toyworld,
        candidates=[],
        lora=lora,
        helper=helper_fields,
        notes=notes,
    )
    for c in grid:
        fields = {
            "values": c.value_dict,
            "number": c.number,
            "seed": c.seed,
            "prompt": c.prompt,
            "plain_prompt": c.plain_prompt,
            "caption": c.caption,
            "reference": c.reference,
            "pose": c.pose,
        }
        key = {**plan.params(fields).key(), "helper": _recorded_helper(helper_fields), "reference": c.reference}
        key["pose"] = c.pose
        plan.candidates.append({"id": candidate_id([v for _a, v in c.values], key), **fields})
    return plan


def _recorded_helper(h: dict[str, Any] | None) -> dict[str, Any] | None:
    """A helper as records name it: its kind, project-relative files and scale."""
    if h is None:
        return None
    return {"kind": h["kind"], **h.get("recorded", {}), "scale": h.get("scale", 1.0)}


def _lora(project: Project, ref: str, family: str, weight: float) -> dict[str, Any]:
    from lorawb.matrix.lorafile import check_family, read_lora
    from lorawb.matrix.resolve import rel_to_project

    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path if (Path.cwd() / path).is_file() else project.root / path
    if not path.is_file():
        raise ConfigError(f"--lora {ref!r}: no such file", hint="a LoRA .safetensors (e.g. a run's checkpoint)")
    info = read_lora(path)
    check_family(info, family)
    return {"path": rel_to_project(project, path), "file": str(path.resolve()), "label": path.stem, "weight": weight}


def image_request(p: dict[str, Any], lora: str, helper: str, helper_input: str) -> ImageRequest:
    """What the generator draws for a candidate's parameters (``Params.as_dict()``; ``lora``: its file)."""
    from lorawb.matrix.requests import ImageRequest

    return ImageRequest(
        prompt=p["prompt"],
        seed=int(p["seed"]),
        negative=p.get("negative", ""),
        width=int(p["width"]),
        height=int(p["height"]),
        steps=int(p["steps"]),
        cfg=float(p["cfg"]),
        sampler=p["sampler"],
        loras=((lora, float(p["weight"])),) if lora else (),
        helper=helper,
        helper_input=helper_input,
    )


# --- records --------------------------------------------------------------------------------------


def record(plan: GeneratePlan, c: dict[str, Any], batch: list[str], index: int, gen: Generator) -> dict[str, Any]:
    """Every parameter that made the candidate, and how (the batch it was drawn in, device, versions)."""
    import diffusers
    import torch

    import lorawb

    project = plan.project
    params = plan.params(c)
    inbox = project.inbox_dir.relative_to(project.root).as_posix()
    return {
        "id": c["id"],
        "kind": "generate",
        "file": f"{inbox}/{c['id']}.png",
        "params": params.as_dict(),
        "values": c["values"],
        "number": c["number"],
        "caption": c["caption"],
        "plain_prompt": c["plain_prompt"],
        "reference": c["reference"],
        "pose": c["pose"],
        "helper": _recorded_helper(plan.helper),
        "model": plan.model,
        "family_settings": plan.settings,
        "batch": batch,
        "batch_index": index,
        "device": str(gen.device),
        "dtype": str(gen.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "versions": {"lorawb": lorawb.__version__, "torch": torch.__version__, "diffusers": diffusers.__version__},
    }


def repair_records(plan: GeneratePlan) -> int:
    """Give back their records to inbox PNGs that lost them (killed between the PNG and the record)."""
    from lorawb.matrix.folder import read_rows
    from lorawb.matrix.pngtext import record_from_png
    from lorawb.train.events import EventWriter

    project = plan.project
    rows = read_rows(plan.job().candidates_log, "candidate")
    n = 0
    for c in plan.candidates:
        png = project.inbox_dir / f"{c['id']}.png"
        if c["id"] in rows or not png.is_file():
            continue
        rec = record_from_png(png)
        if rec is not None:
            rec.pop("type", None)
            with EventWriter(plan.job().candidates_log) as w:
                w.emit("candidate", **rec)
            n += 1
    return n


def pose_image(plan: GeneratePlan, name: str) -> Path:
    """The pose's skeleton at the plan's size (drawn once into the job folder)."""
    return pose_file(plan.job().poses_dir, name, plan.width, plan.height)


def pose_file(folder: Path, name: str, width: int, height: int) -> Path:
    """``folder/<pose>-<w>x<h>.png``: the library pose's skeleton, drawn if missing (the same pixels every time)."""
    import io

    from lorawb.generate import poses

    path = folder / f"{_slug([name])}-{width}x{height}.png"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        poses.draw(name, width, height).save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue())
    return path


def find_record(project: Project, ref: str) -> dict[str, Any]:
    """A candidate's record by id, file name or path: from candidates.jsonl, else from its PNG."""
    from lorawb.matrix.folder import read_rows
    from lorawb.matrix.pngtext import record_from_png

    stem = Path(ref).stem
    rows = read_rows(GenerateJob.of(project).candidates_log, "candidate")
    if stem in rows:
        return rows[stem]
    for path in (Path(ref), project.root / ref, project.inbox_dir / f"{stem}.png"):
        if path.is_file():
            rec = record_from_png(path)
            if rec is not None and rec.get("kind") == "generate":
                return rec
    raise LorawbError(
        f"no record of candidate {ref!r}",
        hint="give an image lorawb generate drew (its PNG carries its record) or its id",
    )


# --- the job --------------------------------------------------------------------------------------


def load_plan(job: ImageJob) -> GeneratePlan:
    data = imagejob.read_plan(job, "generate job", "start one with `lorawb generate`")
    return GeneratePlan(**data)


def save_plan(job: GenerateJob, plan: GeneratePlan) -> None:
    """The plan a worker started later (the queue's) will draw."""
    imagejob.save_plan(job, __name__, asdict(plan))


def start_generate(
    project: Project, plan: GeneratePlan, *, detach: bool = True, progress: ProgressFn | None = None
) -> str | None:
    """Draw the plan's missing candidates: detached (returns None at once) or here (the final state)."""
    return imagejob.start(
        GenerateJob.of(project), __name__, asdict(plan), detach=detach, progress=progress, what="candidates"
    )


def stop_generate(project: Project, wait: float = 0.0) -> bool:
    return imagejob.stop(GenerateJob.of(project), wait)


def generate_status(project: Project) -> JobStatus:
    """Where the project's generate job stands (events, lock, what exists on disk; no torch)."""
    job = GenerateJob.of(project)
    if not job.plan_file.is_file():
        return JobStatus("none", 0, 0)
    plan = load_plan(job)
    return imagejob.status(job, plan.total - len(plan.missing()), plan.total)


def rescore(project: Project) -> Any:
    """Score the last plan's candidates in the inbox again (e.g. after setting an embedder)."""
    from lorawb.generate.presort import score_candidates

    plan = load_plan(GenerateJob.of(project))
    return score_candidates(project, plan.records(), plan.context(), plan.job().scores_log)


def regenerate(project: Project, ref: str, alone: bool = False, gen: Generator | None = None) -> Any:
    """Draw a candidate again from its record (its whole batch, unless ``alone``); the PIL image.

    Its batch redrawn reproduces the PNG bit for bit on the same device and thread count; drawn
    alone, float summation order may move a few pixels by a level.
    """
    from lorawb.matrix.folder import read_rows
    from lorawb.matrix.generate import Generator
    from lorawb.train.config import ModelSection

    rec = find_record(project, ref)
    rows = read_rows(GenerateJob.of(project).candidates_log, "candidate")
    ids = [rec["id"]] if alone else list(rec.get("batch") or [rec["id"]])
    if any(i not in rows for i in ids if i != rec["id"]):
        ids = [rec["id"]]
    recs = [rows.get(i, rec) if i != rec["id"] else rec for i in ids]
    helper = rec.get("helper")
    if gen is None:
        gen = Generator.load(
            ModelSection.model_validate(rec["model"]),
            device=str(rec.get("device", "auto")).split(":")[0],
            threads=int(rec.get("threads", 0) or 0),
            settings=rec.get("family_settings"),
        )
        if helper:
            from lorawb.families import Helper

            path = str(project.resolve(helper["path"])) if helper.get("path") else ""
            encoder = str(project.resolve(helper["encoder"])) if helper.get("encoder") else ""
            gen.use_helper(Helper(helper["kind"], path, encoder, float(helper.get("scale", 1.0))))

    def request(r: dict[str, Any]) -> ImageRequest:
        p = r["params"]
        helper_input = ""
        if helper:
            if r.get("pose"):
                poses_dir = GenerateJob.of(project).poses_dir
                helper_input = str(pose_file(poses_dir, r["pose"], int(p["width"]), int(p["height"])))
            else:
                helper_input = str(project.resolve(r["reference"]))
        lora = str(project.resolve(p["lora"]["path"])) if p.get("lora") else ""
        return image_request(p, lora, helper["kind"] if helper else "", helper_input)

    images = gen.run_batch([request(r) for r in recs])
    return images[ids.index(rec["id"])]


def existing_image(project: Project, rec: dict[str, Any]) -> Path | None:
    """Where the candidate's PNG is now: the inbox, or the dataset after triage."""
    png = project.root / rec["file"]
    if png.is_file():
        return png
    for p in files.walk_images(project.dataset_dir, skip_rejected=False) if project.dataset_dir.is_dir() else []:
        if p.stem == rec["id"]:
            return p
    return None
