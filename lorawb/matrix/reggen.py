"""`lorawb reg generate`: regularisation images drawn by the project's own base model.

kohya's regularisation images are the base model's pictures of the class alone ("woman"),
so training on them beside the character keeps the class as the base model draws it. This
draws them with the matrix generator (one model load, batches, each image's noise from its
own seed), in a detached image job with progress (lorawb.matrix.imagejob, shared with
`lorawb generate`), into ``reg/1_<class>/`` with a caption per image (the prompt it was drawn
from), which is what the trainer reads (``dataset.reg_path``).

The prompts vary over the project's ``[tags.groups]`` contexts and styles (``woman, forest,
watercolor``) unless a prompts file is given (one per line, ``{class}`` replaced). The job
lives in ``.lorawb/reg-generate/``: ``plan.json`` (what to draw), ``events.jsonl`` (status and
one ``image`` event per image), ``job.log``, the lock, the pid and a stop request. A rerun
draws only the images that are missing; a stop is honoured between batches.
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorawb import families
from lorawb.core.confine import name_problem
from lorawb.core.fsutil import atomic_write_bytes, atomic_write_text, read_text
from lorawb.core.project import STATE_DIR, Project
from lorawb.errors import ConfigError
from lorawb.matrix import imagejob
from lorawb.matrix.imagejob import ImageJob, JobStatus, ProgressFn

if TYPE_CHECKING:
    import logging

    from lorawb.matrix.generate import Generator
    from lorawb.matrix.requests import ImageRequest
    from lorawb.train.events import EventWriter

KIND = "reg-generate"
BATCH = 8


class RegJob(ImageJob):
    """The project's one regularisation-image job (``.lorawb/reg-generate/``)."""

    worker_name = "reg image generator"
    job_name = "reg generation"
    stop_command = "lorawb reg stop"

    @classmethod
    def of(cls, project: Project, kind: str = KIND) -> RegJob:
        return cls(project.root / STATE_DIR / kind)


@dataclass
class RegPlan:
    """What to draw: ``count`` images of ``class_word``, image i from ``prompts[i % len]`` at seed ``seed + i``."""

    class_word: str
    count: int
    prompts: list[str]
    out_dir: str  # absolute: reg/1_<class>/
    model: dict[str, Any]  # the run config's [model] section
    width: int
    height: int
    steps: int = 20
    cfg: float = 0.0  # guidance (plan_reg fills the model's recommendation)
    seed: int = 0
    negative: str = ""
    created: float = field(default_factory=time.time)
    settings: dict[str, Any] = field(default_factory=dict)  # the model family's section of the config

    def name(self, i: int) -> str:
        return f"reg_{i:05d}.png"

    def prompt(self, i: int) -> str:
        return self.prompts[i % len(self.prompts)]

    def missing(self) -> list[int]:
        out = Path(self.out_dir)
        return [i for i in range(self.count) if not (out / self.name(i)).exists()]

    # --- drawing (lorawb.matrix.imagejob.Drawing) -----------------------------------------------
    @property
    def total(self) -> int:
        return self.count

    batch = BATCH

    def generator(self, log: logging.Logger) -> Generator:
        from lorawb.matrix.generate import Generator
        from lorawb.train.config import ModelSection

        gen = Generator.load(ModelSection(**self.model), settings=self.settings)
        log.info("drawing reg images of %r at %dx%d, guidance %g", self.class_word, self.width, self.height, self.cfg)
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        return gen

    def request(self, i: int) -> ImageRequest:
        from lorawb.matrix.requests import ImageRequest

        return ImageRequest(
            prompt=self.prompt(i),
            seed=self.seed + i,
            negative=self.negative,
            width=self.width,
            height=self.height,
            steps=self.steps,
            cfg=self.cfg,
        )

    def save(self, i: int, image: Any, batch: Sequence[int], index: int, gen: Generator) -> str:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        path = Path(self.out_dir) / self.name(i)
        atomic_write_text(path.with_suffix(".txt"), self.prompt(i) + "\n")  # the caption first: never uncaptioned
        atomic_write_bytes(path, buf.getvalue())
        return path.name

    def finish(self, events: EventWriter, log: logging.Logger) -> None:
        return None


def class_folder(class_word: str, repeats: int = 1) -> str:
    """kohya's reg folder for a class: ``1_woman`` (the class tokens are what follows ``N_``).

    The class becomes a folder name inside reg/: one plain name (``confine.name_problem``), else a
    ConfigError naming ``--class``.
    """
    cls = " ".join(class_word.split())
    why = name_problem(cls)
    if why is not None:
        raise ConfigError(
            f"--class {class_word!r}: {why}; give a class word such as woman", hint="it names reg/1_<class>/"
        )
    return f"{repeats}_{cls}"


def varied_prompts(project: Project, class_word: str) -> list[str]:
    """The class in each of the project's contexts and styles (``[tags.groups]``), or the class alone."""
    groups = project.config.tags.groups
    axes = [groups[g] for g in ("context", "style") if groups.get(g)]
    if not axes:
        axes = [v for v in groups.values() if v][:2]
    if not axes:
        return [class_word]
    return [", ".join([class_word, *combo]) for combo in itertools.product(*axes)]


def prompts_from_file(path: Path, class_word: str) -> list[str]:
    """One prompt per line (``#`` comments and blank lines skipped), ``{class}`` replaced by the class."""
    if not path.is_file():
        raise ConfigError("prompts file not found", path=path)
    text = read_text(path).text
    prompts = [ln.strip().replace("{class}", class_word) for ln in text.splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ConfigError(
            "the prompts file has no prompts", path=path, hint="one prompt per line; {class} is the class"
        )
    return prompts


def plan_reg(
    project: Project,
    class_word: str,
    *,
    count: int = 200,
    prompts_file: str | Path | None = None,
    steps: int = 20,
    seed: int = 0,
) -> RegPlan:
    """The plan for ``count`` reg images of ``class_word`` with the project's base model."""
    from lorawb.matrix.resolve import model_defaults
    from lorawb.train.config import resolve_config
    from lorawb.train.modelpath import check_model_path, detect_family

    if count < 1:
        raise ConfigError("--count must be at least 1")
    folder = class_folder(class_word)
    cls = folder.split("_", 1)[1]
    cfg = resolve_config(project)
    if not cfg.model.path:
        raise ConfigError(
            "no base model: set [model] path in lorawb.toml",
            path=project.config_path,
            hint="the reg images are drawn by the model you train on",
        )
    prompts = prompts_from_file(Path(prompts_file), cls) if prompts_file else varied_prompts(project, cls)
    res = cfg.dataset.resolution
    base = check_model_path(cfg.model)
    guidance = model_defaults(base, detect_family(base, cfg.model.family), res, cfg=cfg.sample.cfg).cfg
    return RegPlan(
        class_word=cls,
        count=count,
        prompts=prompts,
        out_dir=str((project.reg_dir / folder).resolve()),
        model=cfg.model.model_dump(mode="json"),
        settings=families.family_settings(cfg),
        width=res,
        height=res,
        steps=steps,
        cfg=guidance,
        seed=seed,
        negative=cfg.sample.negative,
    )


def save_plan(job: RegJob, plan: RegPlan) -> None:
    """The plan a worker started later (the queue's) will draw."""
    imagejob.save_plan(job, __name__, asdict(plan))


def load_plan(job: ImageJob) -> RegPlan:
    data = imagejob.read_plan(job, "reg generation", "start one with `lorawb reg generate --class ...`")
    return RegPlan(**data)


def start_reg(
    project: Project, plan: RegPlan, *, detach: bool = True, progress: ProgressFn | None = None
) -> str | None:
    """Draw the plan's missing images: detached (returns None at once) or here (returns the final state)."""
    return imagejob.start(
        RegJob.of(project), __name__, asdict(plan), detach=detach, progress=progress, what="reg images"
    )


def stop_reg(project: Project, wait: float = 0.0) -> bool:
    return imagejob.stop(RegJob.of(project), wait)


@dataclass
class RegStatus(JobStatus):
    out_dir: str = ""


def reg_status(project: Project) -> RegStatus:
    """Where the project's reg generation stands (from its events and lock; no torch)."""
    job = RegJob.of(project)
    if not job.plan_file.is_file():
        return RegStatus("none", 0, 0)
    plan = load_plan(job)
    s = imagejob.status(job, plan.count - len(plan.missing()), plan.count)
    return RegStatus(s.state, s.done, s.total, s.error, s.hint, out_dir=plan.out_dir)
