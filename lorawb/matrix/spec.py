"""matrices/<id>/matrix.toml: the spec of a prompt matrix, validated, with errors that name key and line.

::

    [matrix]
    run = "20261125-143200-zkx_mira"   # the run whose checkpoints `checkpoint` names by step
    prompt = "{trigger}, {context}, {style}"
    negative = ""
    steps = 20
    cfg = 1.5
    sampler = "ddim"
    controls = ["red hair, green outfit, beach"]   # prompts without the trigger: leak is measured on them
    zip = [["context", "style"]]                  # these axes pair their values instead of multiplying

    [axes]                  # multiplied in this order (except zip groups)
    checkpoint = [50, 200]  # steps of the run's checkpoints, "last", or .safetensors paths
    weight = [0, 0.5, 1]    # LoRA strength; 0 is the base model
    context = ["forest", "bar"]
    seed = [0, 1]

    [view]                  # which axes are rows, columns and pages (a view, not part of the cells)
    cols = ["weight"]
    pages = ["checkpoint"]

Reserved axes: ``checkpoint``, ``weight``, ``seed``, ``cfg``, ``steps``, ``sampler``,
``character`` and ``loras``; every other axis is a slot of the prompt (``{context}``), and every
slot needs an axis.

Several characters (lorawb.toml's ``[characters.<name>]``)::

    pair_template = "{a} on the left and {b} on the right, {context}"   # in [matrix]; default: lorawb.toml's
    pair_width = 64                      # a pair's image width (0: the width)

    [axes]
    character = ["mira", "tom", "mira+tom"]   # each alone ({trigger} is theirs), and a pair (the pair template,
                                              # {context} the prompt without its trigger)
    loras = [["runs/a/mira.safetensors", "runs/b/tom.safetensors"],   # applied together, weight 1
             ["runs/c/joint.safetensors@0.8"]]                          # FILE@WEIGHT This
module only parses and checks the file; lorawb.matrix.cells enumerates what it asks for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lorawb.core import tomlio
from lorawb.errors import ConfigError
from lorawb.train.config import SampleSection

SAMPLERS: tuple[str, ...] = get_args(SampleSection.model_fields["scheduler"].annotation)
RESERVED = ("checkpoint", "weight", "seed", "cfg", "steps", "sampler", "character", "loras")
PROMPT_AXIS = "prompt"  # the template vs. each control prompt; exists when there are control prompts
SLOT_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SPEC_NAME = "matrix.toml"

SlotValue = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
# Bounds that keep a typo from being drawn (and then recommended): a LoRA weight of inf or 1e308,
# a guidance scale of inf. Generous: weights past ±2 and guidance past 30 are rarely useful.
MAX_WEIGHT = 10.0
MAX_CFG = 100.0
Weight = Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)]
Cfg = Annotated[float, Field(ge=0, le=MAX_CFG, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MatrixSection(_Strict):
    run: str = Field("", description="the training run whose checkpoints the checkpoint axis names by step")
    base_model: str = Field("", description="base model folder or file (default: the run's, else the project's)")
    prompt: str = Field("{trigger}", description="the prompt template: {trigger} and one {slot} per slot axis")
    negative: str = Field("", description="negative prompt (may use the slots too)")
    trigger: str = Field("", description="default: the project's trigger")
    width: int = Field(0, ge=0, le=4096, description="0: the model's recommendation, else the project resolution")
    height: int = Field(0, ge=0, le=4096, description="0: the model's recommendation, else the project resolution")
    steps: int = Field(0, ge=0, le=1000, description="sampling steps (0: the model's recommendation, else 20)")
    cfg: float = Field(
        0.0, ge=0, le=MAX_CFG, allow_inf_nan=False, description="guidance scale (0: the model's recommendation, else 7)"
    )
    sampler: Literal["ddim", "euler", "dpm"] = Field("ddim", description="sampler: " + ", ".join(SAMPLERS))
    batch: int = Field(8, ge=1, le=256, description="images per pipeline call")
    controls: list[str] = Field(
        default_factory=list, description="prompts without the trigger: the LoRA's leak is measured on them"
    )
    zip: list[list[str]] = Field(default_factory=list, description="groups of axes that pair values (same length)")
    pair_template: str = Field(
        "", description="the prompt of a pair on the character axis ({a}, {b}, {context}; default: lorawb.toml's)"
    )
    pair_width: int = Field(0, ge=0, le=8192, description="a pair's image width (0: the width)")


class AxesSection(BaseModel):
    """The axes; reserved names are typed, every other key is a slot of the prompt."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Annotated[list[SlotValue], Field(min_length=1)]] = Field(init=False)

    checkpoint: Annotated[list[int | str], Field(min_length=1)] | None = None
    weight: Annotated[list[Weight], Field(min_length=1)] | None = None
    seed: Annotated[list[Annotated[int, Field(ge=0, lt=2**63)]], Field(min_length=1)] | None = None
    cfg: Annotated[list[Cfg], Field(min_length=1)] | None = None
    steps: Annotated[list[Annotated[int, Field(ge=1, le=1000)]], Field(min_length=1)] | None = None
    sampler: Annotated[list[Literal["ddim", "euler", "dpm"]], Field(min_length=1)] | None = None
    character: Annotated[list[SlotValue], Field(min_length=1)] | None = None
    loras: Annotated[list[Annotated[list[SlotValue], Field(min_length=1)]], Field(min_length=1)] | None = None


class ViewSection(_Strict):
    rows: list[str] = Field(default_factory=list, description="axes down the side (default: every other axis)")
    cols: list[str] = Field(default_factory=list, description="axes across the top (default: weight)")
    pages: list[str] = Field(default_factory=list, description="one page per value (default: checkpoint)")


class SpecFile(_Strict):
    matrix: MatrixSection = Field(default_factory=MatrixSection)
    axes: AxesSection = Field(default_factory=AxesSection)
    view: ViewSection = Field(default_factory=ViewSection)


class MatrixSpec:
    """A validated matrix.toml: the sections, the axes in file order, and where it came from."""

    def __init__(self, file: SpecFile, axis_order: list[str], path: Path | None = None, text: str = "") -> None:
        self.matrix = file.matrix
        self.view = file.view
        self.path = path
        self.text = text
        self.axes: dict[str, list[Any]] = {}
        for name in axis_order:
            values = getattr(file.axes, name, None) if name in RESERVED else (file.axes.model_extra or {}).get(name)
            if values is not None:
                self.axes[name] = list(values)

    @property
    def slots(self) -> list[str]:
        return [a for a in self.axes if a not in RESERVED]

    def axis_names(self) -> list[str]:
        """Every axis of the cells: the spec's, plus ``prompt`` when there are control prompts."""
        return list(self.axes) + ([PROMPT_AXIS] if self.matrix.controls else [])

    def line_of(self, dotted: str) -> int | None:
        return tomlio.find_key_line(self.text, dotted) if self.text else None

    def error(self, dotted: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{dotted}: {message}", path=self.path, line=self.line_of(dotted), hint=hint)


def prompt_slots(text: str) -> list[str]:
    """The ``{name}`` placeholders of a prompt, in order of first appearance."""
    seen: list[str] = []
    for m in SLOT_RE.finditer(text):
        if m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


def fill(template: str, values: dict[str, str]) -> str:
    """Replace ``{name}`` placeholders (other braces are left as written)."""
    return SLOT_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def lora_entry(text: str) -> tuple[str, float]:
    """``runs/x/a.safetensors@0.8`` -> (file, weight); no ``@``: weight 1."""
    path, sep, weight = text.rpartition("@")
    if not sep:
        return text.strip(), 1.0
    try:
        w = float(weight)
    except ValueError:
        raise ValueError(f"{weight!r} after @ is not a weight") from None
    if not -MAX_WEIGHT <= w <= MAX_WEIGHT:
        raise ValueError(f"weight {w:g} is outside -{MAX_WEIGHT:g}..{MAX_WEIGHT:g}")
    return path.strip(), w


def parse_spec(text: str, path: Path | None = None) -> MatrixSpec:
    """Validate matrix.toml text; ConfigError names the key and its line."""
    data = tomlio.to_plain(tomlio.parse_text(text, path=path))
    file = tomlio.validate(SpecFile, data, path=path, text=text)
    order = list((data.get("axes") or {}).keys())
    spec = MatrixSpec(file, order, path, text)
    check_spec(spec)
    return spec


def load_spec(path: Path) -> MatrixSpec:
    """Read and validate a matrix.toml (any encoding)."""
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_NAME
    if not path.is_file():
        raise ConfigError("matrix spec not found", path=path, hint="create one with `lorawb matrix new`")
    _doc, text = tomlio.load_document(path)
    return parse_spec(text, path)


def check_spec(spec: MatrixSpec) -> None:
    """What the types cannot say: slots match axes, zip groups pair, view names axes, no duplicates."""
    m = spec.matrix
    used = prompt_slots(m.prompt) + [s for s in prompt_slots(m.negative) if s not in prompt_slots(m.prompt)]
    for name in used:
        if name == "trigger":
            continue
        if name in RESERVED or name == PROMPT_AXIS:
            raise spec.error("matrix.prompt", f"{{{name}}} is a reserved axis, not a prompt slot")
        if name not in spec.axes:
            raise spec.error(
                "matrix.prompt",
                f"{{{name}}} has no axis",
                hint=f'add e.g. {name} = ["a", "b"] under [axes], or remove {{{name}}} from the prompt',
            )
    for name in spec.slots:
        if name == PROMPT_AXIS:
            raise spec.error(f"axes.{name}", "'prompt' is reserved (the template vs. the control prompts)")
        if name not in used:
            raise spec.error(
                f"axes.{name}",
                f"the prompt has no {{{name}}}",
                hint=f"add {{{name}}} to matrix.prompt, or remove the axis",
            )
    zipped_axes = {name for group in m.zip for name in group}
    for name, values in spec.axes.items():
        if name in zipped_axes:
            continue  # a zipped axis may repeat a value: its pairs must differ (below)
        seen: set[str] = set()
        for v in values:
            key = repr(float(v)) if name in ("weight", "cfg") else repr(v)
            if key in seen:
                raise spec.error(f"axes.{name}", f"{v!r} appears twice", hint="each value of an axis once")
            seen.add(key)
    for v in spec.axes.get("checkpoint", []):
        if isinstance(v, int) and v < 0:
            raise spec.error("axes.checkpoint", f"{v} is not a step", hint='steps are >= 0; or "last", or a file')
        if isinstance(v, str) and not v.strip():
            raise spec.error("axes.checkpoint", "an empty name", hint='a step, "last", or a .safetensors path')
    zipped: set[str] = set()
    for group in m.zip:
        if len(group) < 2:
            raise spec.error("matrix.zip", f"{group}: a zip group pairs two or more axes")
        for name in group:
            if name not in spec.axes:
                raise spec.error("matrix.zip", f"{name!r} is not an axis", hint="axes: " + ", ".join(spec.axes))
            if name in zipped:
                raise spec.error("matrix.zip", f"{name!r} is in two zip groups")
            zipped.add(name)
        lengths = {name: len(spec.axes[name]) for name in group if name in spec.axes}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k} has {v}" for k, v in lengths.items())
            raise spec.error("matrix.zip", f"zipped axes need the same number of values ({shown})")
        pairs = list(zip(*(spec.axes[name] for name in group), strict=False))
        twice = next((p for i, p in enumerate(pairs) if p in pairs[:i]), None)
        if twice is not None:
            raise spec.error(
                f"axes.{group[0]}",
                f"the pair {' · '.join(map(str, twice))} appears twice in zip {group}",
                hint="each pair of a zip group once",
            )
    for i, control in enumerate(m.controls):
        if not control.strip():
            raise spec.error("matrix.controls", f"control prompt {i + 1} is empty")
        if "{trigger}" in control or (m.trigger and m.trigger in control):
            raise spec.error(
                "matrix.controls",
                f"control prompt {i + 1} names the trigger",
                hint="control prompts are the ones *without* the trigger: they measure what leaks into them",
            )
        if prompt_slots(control):
            raise spec.error("matrix.controls", f"control prompt {i + 1} has a slot; controls are literal prompts")
    names = spec.axis_names()
    placed: set[str] = set()
    for part in ("rows", "cols", "pages"):
        for name in getattr(spec.view, part):
            if name not in names:
                raise spec.error(f"view.{part}", f"{name!r} is not an axis", hint="axes: " + ", ".join(names))
            if name in placed:
                raise spec.error(f"view.{part}", f"{name!r} is placed twice in [view]")
            placed.add(name)
    if m.pair_template and ("{a}" not in m.pair_template or "{b}" not in m.pair_template):
        raise spec.error("matrix.pair_template", "the pair template needs both {a} and {b} (the two triggers)")
    if "loras" in spec.axes:
        for other in ("checkpoint", "weight"):
            if other in spec.axes:
                raise spec.error(
                    f"axes.{other}",
                    f"a matrix with a loras axis has no {other} axis: each loras value names its files and weights",
                    hint='write FILE@WEIGHT in the loras values, e.g. ["a.safetensors@0.8", "b.safetensors"]',
                )
        if m.run:
            raise spec.error("matrix.run", "a loras axis names its LoRA files itself; leave matrix.run empty")
        for i, group in enumerate(spec.axes["loras"]):
            for entry in group:
                try:
                    lora_entry(entry)
                except ValueError as exc:
                    raise spec.error("axes.loras", f"value {i + 1}: {exc}", hint="FILE or FILE@WEIGHT") from exc
    if "weight" in spec.axes and "checkpoint" not in spec.axes and not m.run:
        raise spec.error(
            "axes.weight",
            "a LoRA weight axis needs LoRAs",
            hint='set matrix.run to a run id, or add checkpoint = ["path/to/lora.safetensors"] under [axes]',
        )
