"""Does a LoRA teach the toy base model its character? The reader counts it, with and without the LoRA.

For each context, ``{trigger}, {context}`` is drawn with fixed seeds; the reader says how
often the character's look (hair, outfit, accessory) and the prompted context appear.
Unrelated prompts (``red hair, green outfit, beach``...) show drift: how often they
still come out as asked once the LoRA is loaded. The LoRA is loaded the way other tools
load it (diffusers' ``load_lora_weights`` on the kohya file), so this also checks the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorawb.toyworld import reader, sample, world

UNRELATED = ("red hair, green outfit, beach", "white hair, purple outfit, forest")


@dataclass
class CheckResult:
    """Shares (0..1) of images, per context and overall, for one setting (base or base + LoRA)."""

    label: str
    character: dict[str, float] = field(default_factory=dict)  # hair and outfit as the character's
    accessory: dict[str, float] = field(default_factory=dict)  # the character's accessory
    context: dict[str, float] = field(default_factory=dict)  # the prompted context
    unrelated: float = 0.0  # unrelated prompts drawn as asked (hair, outfit, context)
    unrelated_character: float = 0.0  # unrelated prompts that came out as the character anyway
    readings: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "character": self.character,
            "accessory": self.accessory,
            "context": self.context,
            "unrelated": self.unrelated,
            "unrelated_character": self.unrelated_character,
        }


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def check(
    pipe: Any,
    label: str,
    *,
    trigger: str = sample.TRIGGER,
    character: dict[str, str] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3),
    cfg: float = 1.5,
    steps: int = 20,
    contexts: Sequence[str] = world.CONTEXTS,
    unrelated: Sequence[str] = UNRELATED,
) -> CheckResult:
    """Draw and read every trigger prompt (per context) and unrelated prompt at every seed."""
    from lorawb.toyworld.toymodel import generate

    character = dict(character or sample.CHARACTER)
    look = {k: v for k, v in character.items() if k in ("hair", "outfit")}
    prompts = [f"{trigger}, {c}" for c in contexts for _ in seeds] + [p for p in unrelated for _ in seeds]
    all_seeds = [s for _ in list(contexts) + list(unrelated) for s in seeds]
    reads = [reader.read(a) for a in generate(pipe, prompts, all_seeds, cfg, steps=steps)]
    res = CheckResult(label=label, readings=[r.as_dict() for r in reads])
    n = len(seeds)
    for i, c in enumerate(contexts):
        rs = reads[i * n : (i + 1) * n]
        res.character[c] = _share([r.matches(look) for r in rs])
        res.accessory[c] = _share([r.accessory == character.get("accessory", "none") for r in rs])
        res.context[c] = _share([r.context == c for r in rs])
    trig = reads[: len(contexts) * n]
    res.character["all"] = _share([r.matches(look) for r in trig])
    res.accessory["all"] = _share([r.accessory == character.get("accessory", "none") for r in trig])
    res.context["all"] = _share(
        [r.context == c for r, c in zip(trig, [c for c in contexts for _ in seeds], strict=True)]
    )
    other = reads[len(contexts) * n :]
    wants = [world.parse_prompt(p) for p in unrelated for _ in seeds]
    res.unrelated = _share([r.matches(w) for r, w in zip(other, wants, strict=True)])
    res.unrelated_character = _share([r.matches(look) for r in other])
    return res


def check_lora(
    model_dir: str | Path,
    lora: str | Path,
    *,
    weight: float = 1.0,
    device: str = "cpu",
    **kw: Any,
) -> tuple[CheckResult, CheckResult]:
    """(without, with) the LoRA file ``lora`` on the toy model at ``model_dir``."""
    from lorawb.toyworld.toymodel import load_pipeline

    pipe = load_pipeline(model_dir, device)
    base = check(pipe, "base", **kw)
    pipe.load_lora_weights(str(lora), adapter_name="check")
    pipe.set_adapters(["check"], [weight])
    with_lora = check(pipe, f"+ {Path(lora).stem}", **kw)
    return base, with_lora


def table(results: Sequence[CheckResult], contexts: Sequence[str] = world.CONTEXTS) -> str:
    """A plain-text table: character look / accessory / context per context, and unrelated prompts."""
    head = f"{'':30} " + " ".join(f"{c:>9}" for c in [*contexts, "all"]) + f" {'unrelated':>10} {'leak':>6}"
    lines = [head]
    for r in results:
        for what, d in (("character", r.character), ("accessory", r.accessory), ("context", r.context)):
            row = f"{what:10} {r.label[:19]:19} " + " ".join(f"{d.get(c, 0):>9.0%}" for c in [*contexts, "all"])
            if what == "character":
                row += f" {r.unrelated:>10.0%} {r.unrelated_character:>6.0%}"
            lines.append(row)
    return "\n".join(lines)


def copy_sample_project(dest: str | Path, source: str | Path | None = None) -> Path:
    """A working copy of the sample project (settings, dataset, inbox) whose model is the committed one.

    Without ``source`` the copy is made fresh by the generator (``make_sample_project``), never
    copied from the repository's sample_project/, which a user may have changed (the README tour
    rejects an image). With ``source``, that folder is copied.
    """
    import shutil

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if source is None:
        sample.make_sample_project(dest, write_toml=True, name="sample_project")
        model_src = sample.committed_model_dir()
    else:
        src = Path(source)
        shutil.copy2(src / "lorawb.toml", dest / "lorawb.toml")
        for sub in ("dataset", "inbox"):
            if (src / sub).is_dir():
                shutil.copytree(src / sub, dest / sub, dirs_exist_ok=True, symlinks=True)
        model_src = (src / sample.MODEL_DIR).resolve()
    model = dest / sample.MODEL_DIR
    model.parent.mkdir(parents=True, exist_ok=True)
    try:
        model.symlink_to(model_src, target_is_directory=True)
    except OSError:  # no symlinks here (Windows without the right): copy the 10 MB instead
        shutil.copytree(model_src, model)
    return dest


def train_project(project_dir: str | Path, overrides: Sequence[str] = ()) -> Path:
    """Train a LoRA on ``project_dir`` with its lorawb.toml (plus ``--set`` overrides), in this process.

    Returns the last checkpoint. This is what ``lorawb train PROJECT`` does, without the progress line.
    """
    from lorawb.core.project import Project
    from lorawb.errors import RunError
    from lorawb.train.config import resolve_config
    from lorawb.train.process import create_run, launch

    project = Project.load(project_dir)
    run = create_run(project, resolve_config(project, None, list(overrides)), "check")
    launch(run, detach=False)
    ckpts = sorted(run.checkpoints.glob("*.safetensors"))
    if not ckpts:
        raise RunError("the run wrote no checkpoint", path=run.path, hint="see its train.log")
    return ckpts[-1]
