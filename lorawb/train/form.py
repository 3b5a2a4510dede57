"""The new-run form's model: where it is prefilled from, its fields, and checking it.

The form edits one TOML text (the full run config); its fields are views over the most
used keys of that text. Everything here is plain data and text, so it is tested without
a screen: prefill sources (each earlier run's frozen config, newest first, then the
project's lorawb.toml), field parsing, writing a field back into the TOML (tomlkit keeps
the comments), validation that names the key and line, and the settings that differ
from the source (users should change one at a time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tomlkit

from lorawb import families
from lorawb.core import tomlio
from lorawb.errors import ConfigError, LorawbError
from lorawb.families.base import Preset
from lorawb.train.compare import DiffRow, config_diff
from lorawb.train.config import (
    TrainConfig,
    check_family,
    check_preservation,
    fill_project_defaults,
    load_run_config,
    project_training,
)
from lorawb.train.runfolder import list_runs

if TYPE_CHECKING:
    from lorawb.core.project import Project


@dataclass(frozen=True)
class FormField:
    key: str  # dotted config key
    label: str
    kind: type  # int, float or str
    help: str = ""


FIELDS: tuple[FormField, ...] = (
    FormField("train.max_steps", "steps", int, "optimizer steps (0: train by epochs)"),
    FormField("train.epochs", "epochs", int, "epochs when steps is 0"),
    FormField("train.batch_size", "batch", int, "images per step"),
    FormField("train.learning_rate", "learning rate", float, "e.g. 1e-4"),
    FormField("network.rank", "rank", int, "LoRA rank (dim)"),
    FormField("network.alpha", "alpha", float, "the update is scaled by alpha/rank"),
    FormField("dataset.resolution", "resolution", int, "bucket side in px"),
    FormField("sample.every_n_steps", "sample every", int, "steps between samples (0: off)"),
    FormField("save.every_n_steps", "save every", int, "steps between checkpoints (0: only the last)"),
    FormField("dataset.prior_loss_weight", "reg weight", float, "loss weight of the reg images (reg/)"),
    FormField("train.preservation", "preserve", str, "none, or output (the LoRA keeps off the class)"),
    FormField("train.preservation_class", "class word", str, "replaces the trigger, e.g. woman"),
    FormField("train.preservation_weight", "preserve wt", float, "weight of the preservation loss"),
)
PROMPTS_KEY = "sample.prompts"


# Memory presets: each family contributes its own (Family.presets: settings that fit a card, which
# the memory plan checks in the tests); the form lists them all.
PRESETS: tuple[Preset, ...] = tuple(p for family in families.REGISTRY.values() for p in family.presets)


def apply_preset(text: str, preset: Preset) -> str:
    """``text`` with the preset's settings written in (comments and every other key kept)."""
    for key, value in preset.values:
        text = set_in_toml(text, key, value)
    return text


FIELD_KEYS = {f.key for f in FIELDS} | {PROMPTS_KEY}


@dataclass(frozen=True)
class Source:
    """Where the form was prefilled from: a run's frozen config, or the project's lorawb.toml."""

    label: str
    run_id: str | None
    config: TrainConfig
    # lorawb.toml's problems (file:line:key, as the CLI reports them) and the bad values as written
    errors: tuple[ConfigError, ...] = ()
    bad_values: tuple[tuple[str, Any], ...] = ()

    def toml(self) -> str:
        """The form's TOML: the config, with the bad values put back as written (the form flags them)."""
        text = self.config.to_toml()
        for key, value in self.bad_values:
            try:
                text = set_in_toml(text, key, value)
            except Exception:  # a value tomlkit cannot write back: the error still names it
                continue
        return text


def project_source(project: Project) -> Source:
    """lorawb.toml's training defaults, resolved (paths absolute, trigger and resolution filled).

    A bad key does not throw the other settings away: they prefill the form, the bad value is
    shown as written, and the error says where it is in lorawb.toml.
    """
    training = project_training(project)
    return Source("lorawb.toml", None, training.config, tuple(training.errors), tuple(training.dropped.items()))


def prefill_sources(project: Project, limit: int = 20) -> tuple[list[Source], list[str]]:
    """The runs whose config can prefill the form (newest first) and lorawb.toml; plus problems found."""
    sources: list[Source] = []
    problems: list[str] = []
    for run in reversed(list_runs(project.runs_dir)):
        if len(sources) >= limit:
            break
        if not run.config.is_file():
            continue
        try:
            sources.append(Source(run.id, run.id, load_run_config(run.config)))
        except LorawbError as exc:
            problems.append(str(exc))
    sources.append(project_source(project))
    return sources, problems


def get_dotted(data: dict[str, Any], key: str, default: Any = None) -> Any:
    cur: Any = data
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def format_field(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def parse_field(field: FormField, text: str) -> int | float | str:
    """The typed value of a field's text; ValueError says what is expected."""
    text = text.strip()
    if field.kind is str:
        return text
    if not text:
        raise ValueError("needs a value")
    try:
        if field.kind is int:
            return int(text)
        return float(text)
    except ValueError:
        raise ValueError("needs a whole number" if field.kind is int else "needs a number, e.g. 1e-4") from None


def parse_toml(text: str) -> dict[str, Any]:
    """Plain data of the form's TOML; a syntax error is a ConfigError with its line."""
    return tomlio.to_plain(tomlio.parse_text(text))


def set_in_toml(text: str, key: str, value: Any) -> str:
    """``text`` with ``key`` set to ``value``, everything else (comments, order) kept."""
    doc = tomlkit.parse(text)
    parts = key.split(".")
    table: Any = doc
    for p in parts[:-1]:
        if p not in table:
            table[p] = tomlkit.table()
        table = table[p]
    table[parts[-1]] = value  # tomlkit keeps the line's comment when a value is replaced
    return tomlkit.dumps(doc)


def validate(text: str, project: Project) -> TrainConfig:
    """The form's TOML as a run config; ConfigError names the key (and line) of the first problem."""
    data = parse_toml(text)
    cfg = tomlio.validate(TrainConfig, data, path=None, text=text)
    if cfg.train.max_steps == 0 and cfg.train.epochs == 0:
        raise ConfigError(
            "train.max_steps: steps and epochs are both 0: set one of them",
            line=tomlio.find_key_line(text, "train.max_steps"),
        )
    cfg = fill_project_defaults(cfg, project)
    check_preservation(cfg, text)
    check_family(cfg, text)
    return cfg


def error_key(exc: ConfigError) -> str | None:
    """The dotted key a validation error is about (its message starts with it)."""
    head = exc.message.split(":", 1)[0].strip()
    return head if "." in head and " " not in head else None


def differences(text: str, source: Source, project: Project) -> list[DiffRow]:
    """Settings of the form that differ from its source (validated values when the text is valid)."""
    # Compare filled with filled: a source from lorawb.toml leaves the dataset path etc. empty.
    base = fill_project_defaults(source.config, project).model_dump(mode="json")
    try:
        now = validate(text, project).model_dump(mode="json")
    except ConfigError:
        try:
            now = parse_toml(text)
        except ConfigError:
            return []
    return config_diff(base, now)


def model_changes(data: dict[str, Any], model_path: str, project: Project) -> tuple[dict[str, int], Any]:
    """The dataset.resolution / dataset.bucket_step a newly chosen model recommends, where they differ."""
    from lorawb.train.modelpath import recommend

    rec = recommend(project.resolve(model_path))
    if rec is None:
        return {}, None
    want = {"dataset.resolution": rec.resolution, "dataset.bucket_step": rec.bucket_step}
    return {k: v for k, v in want.items() if get_dotted(data, k) != v}, rec
