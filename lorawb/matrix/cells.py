"""The cells of a matrix: a pure function of its spec and what the spec's names resolve to.

A *cell* is one image: every parameter that makes it (``Params``) and an id that is a
stable function of them, so adding an axis value never renames the other cells, a rerun
finds the cells that exist, and a cell regenerates from its record. A *position* is a
point of the axes' product; several positions can show one cell: at weight 0 every
checkpoint draws the base model, so that image is made once.

Axes multiply (in spec order), except ``zip`` groups whose values pair up. Control
prompts (no trigger, no slots) are drawn at every non-slot combination; they sit on the
``prompt`` axis beside the template. Which axes are rows, columns and pages is a
``View``, separate from the cells: ``arrange`` lays positions out for one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lorawb.core.captions import Caption, join_tags, tag_key
from lorawb.core.characters import DEFAULT_PAIR_TEMPLATE
from lorawb.matrix.spec import PROMPT_AXIS, RESERVED, MatrixSpec, fill
from lorawb.words import plural

NO_VALUE = -1  # a control prompt's index on the slot axes (it has no slots)


@dataclass(frozen=True)
class LoraRef:
    """A LoRA file as a cell records it: the path (project-relative where it can be) and a label."""

    path: str
    label: str
    step: int | None = None


@dataclass(frozen=True)
class Params:
    """Everything that makes a cell's image; ``id`` hashes it (the LoRA by path, not label)."""

    base: str
    lora: LoraRef | None
    weight: float
    prompt: str
    negative: str
    seed: int
    cfg: float
    steps: int
    sampler: str
    width: int
    height: int
    stack: tuple[tuple[LoraRef, float], ...] = ()  # LoRAs applied together (the loras axis), with weights

    def key(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.stack:  # only then: the ids of cells without a stack stay what they were
            extra["loras"] = [[ref.path, float(w)] for ref, w in self.stack]
        return extra | {
            "base": self.base,
            "lora": self.lora.path if self.lora else None,
            "weight": float(self.weight),
            "prompt": self.prompt,
            "negative": self.negative,
            "seed": int(self.seed),
            "cfg": float(self.cfg),
            "steps": int(self.steps),
            "sampler": self.sampler,
            "width": int(self.width),
            "height": int(self.height),
        }

    @property
    def id(self) -> str:
        blob = json.dumps(self.key(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:10]

    @property
    def is_base(self) -> bool:
        return self.lora is None and not self.stack

    def base_twin(self) -> Params:
        """The same image without the LoRA (weight 0)."""
        return replace(self, lora=None, weight=0.0, stack=())

    def all_loras(self) -> list[tuple[LoraRef, float]]:
        """Every LoRA the image is drawn with, and its weight."""
        return ([(self.lora, float(self.weight))] if self.lora is not None else []) + list(self.stack)

    def as_dict(self) -> dict[str, Any]:
        d = self.key()
        d["lora"] = (
            None if self.lora is None else {"path": self.lora.path, "label": self.lora.label, "step": self.lora.step}
        )
        if self.stack:
            d["loras"] = [{"path": r.path, "label": r.label, "step": r.step, "weight": float(w)} for r, w in self.stack]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Params:
        lora = d.get("lora")
        ref = None if not lora else LoraRef(str(lora["path"]), str(lora.get("label", "")), lora.get("step"))
        stack = tuple(
            (LoraRef(str(e["path"]), str(e.get("label", "")), e.get("step")), float(e["weight"]))
            for e in d.get("loras") or ()
        )
        return Params(
            stack=stack,
            base=str(d["base"]),
            lora=ref,
            weight=float(d["weight"]),
            prompt=str(d["prompt"]),
            negative=str(d.get("negative", "")),
            seed=int(d["seed"]),
            cfg=float(d["cfg"]),
            steps=int(d["steps"]),
            sampler=str(d["sampler"]),
            width=int(d["width"]),
            height=int(d["height"]),
        )


@dataclass(frozen=True)
class Cell:
    params: Params
    slots: tuple[tuple[str, str], ...] = ()  # slot axis -> value (empty for control prompts)
    control: int | None = None  # index of the control prompt, or None for the template
    plain_prompt: str = ""  # the prompt without the trigger (what "prompt following" compares with)
    characters: tuple[str, ...] = ()  # the characters it prompts (the character axis): one, or a pair
    triggers: tuple[str, ...] = ()  # their triggers, in the same order

    @property
    def id(self) -> str:
        return self.params.id

    @property
    def base_id(self) -> str:
        """The id of this cell's weight-0 twin (itself when it has no LoRA)."""
        return self.params.base_twin().id

    @property
    def is_control(self) -> bool:
        return self.control is not None

    def caption(self, trigger: str) -> str:
        """The caption a promoted copy gets: the trigger first (a pair's: both triggers, in the
        characters' order), then the slot values (deduplicated)."""
        tags: list[str] = list(self.triggers) if self.triggers else [trigger] if trigger else []
        for _axis, value in self.slots:
            for tag in Caption.parse(value).tags:
                if tag_key(tag) not in {tag_key(t) for t in tags}:
                    tags.append(tag)
        return join_tags(tags)


@dataclass(frozen=True)
class Resolved:
    """What the spec's names resolve to (lorawb.matrix.resolve), so enumeration stays pure."""

    base: str
    trigger: str
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str
    checkpoints: tuple[LoraRef | None, ...]  # one per checkpoint value (None: no LoRA at all)
    characters: tuple[tuple[str, str], ...] = ()  # the project's characters: (name, trigger)
    pair_template: str = ""
    pair_width: int = 0  # 0: width
    stacks: tuple[tuple[tuple[LoraRef, float], ...], ...] = ()  # one per loras value


@dataclass
class Axis:
    name: str
    values: list[Any]
    labels: list[str]  # full: "step 200", "weight 0.5", "seed 0", "forest", "control 1: ..."
    short: list[str]  # for narrow headers: "200", "0.5", "s0", "forest", "ctl 1"

    def __len__(self) -> int:
        return len(self.values)

    def label(self, index: int, short: bool = False) -> str:
        if index == NO_VALUE:
            return ""
        return (self.short if short else self.labels)[index]


@dataclass(frozen=True)
class Position:
    coords: tuple[tuple[str, int], ...]  # axis -> index of its value (NO_VALUE for a control's slots)
    cell: str

    def index(self, axis: str) -> int:
        for name, i in self.coords:
            if name == axis:
                return i
        return 0


@dataclass
class Layout:
    axes: dict[str, Axis]
    positions: list[Position]
    cells: dict[str, Cell]  # unique, in enumeration order
    trigger: str = ""
    slots: list[str] = field(default_factory=list)

    @property
    def varying(self) -> list[str]:
        """Axes with more than one value (the others are constants, shown in a title)."""
        return [n for n, a in self.axes.items() if len(a) > 1]

    @property
    def constants(self) -> dict[str, str]:
        return {n: a.labels[0] for n, a in self.axes.items() if len(a) == 1 and a.labels[0]}

    def positions_of(self, cell_id: str) -> list[Position]:
        return [p for p in self.positions if p.cell == cell_id]

    def describe(self, position: Position) -> dict[str, str]:
        return {name: self.axes[name].label(i) for name, i in position.coords if self.axes[name].label(i)}


# --- labels ---------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{float(x):g}"


def axis_labels(name: str, values: Sequence[Any], loras: Sequence[LoraRef | None] = ()) -> tuple[list[str], list[str]]:
    if name == "checkpoint":
        full = [(r.label if r else "base") for r in loras] if loras else [str(v) for v in values]
        short = [f.removeprefix("step ") for f in full]
        return full, short
    if name == "weight":
        return [f"weight {_num(v)}" for v in values], [_num(v) for v in values]
    if name == "seed":
        return [f"seed {v}" for v in values], [f"s{v}" for v in values]
    if name == "cfg":
        return [f"cfg {_num(v)}" for v in values], [_num(v) for v in values]
    if name == "steps":
        return [f"{v} steps" for v in values], [str(v) for v in values]
    if name == "loras":
        full = [stack_label(v) for v in values]
        return full, full
    if name == PROMPT_AXIS:
        full = [""] + [f"control {i}: {v}" for i, v in enumerate(values[1:], 1)]
        short = [""] + [f"ctl {i}" for i in range(1, len(values))]
        return full, short
    return [str(v) for v in values], [str(v) for v in values]


def stack_label(stack: Sequence[tuple[LoraRef, float]]) -> str:
    """``mira + tom`` (weights other than 1 shown: ``mira@0.8``)."""
    return " + ".join(r.label + ("" if float(w) == 1.0 else f"@{_num(w)}") for r, w in stack) or "base"


# --- enumeration ----------------------------------------------------------------------------------


def effective_axes(spec: MatrixSpec, resolved: Resolved) -> dict[str, list[Any]]:
    """The spec's axes plus the implied ones: one checkpoint (``last``) with a run, weight 1 or 0, seed 0."""
    axes: dict[str, list[Any]] = {}
    has_lora = any(r is not None for r in resolved.checkpoints)
    if "loras" in spec.axes:
        axes["loras"] = list(resolved.stacks)
    axes["checkpoint"] = list(spec.axes.get("checkpoint", ["last"] if has_lora else ["base"]))
    axes["weight"] = [float(w) for w in spec.axes.get("weight", [1.0 if has_lora else 0.0])]
    for name, values in spec.axes.items():
        if name not in axes:
            axes[name] = list(values)
    axes.setdefault("seed", [0])
    if spec.matrix.controls:
        axes[PROMPT_AXIS] = ["template", *spec.matrix.controls]
    return axes


def _groups(names: list[str], zips: list[list[str]]) -> list[list[str]]:
    """Axis names in product groups: each zip group together (at its first axis), the others alone."""
    out: list[list[str]] = []
    done: set[str] = set()
    for name in names:
        if name in done:
            continue
        group = next((g for g in zips if name in g), [name])
        group = [n for n in group if n in names]
        out.append(group)
        done.update(group)
    return out


def _combos(groups: list[list[str]], axes: dict[str, list[Any]]) -> Iterable[dict[str, int]]:
    ranges = [range(len(axes[g[0]])) for g in groups]
    for picks in itertools.product(*ranges):
        combo: dict[str, int] = {}
        for group, i in zip(groups, picks, strict=True):
            for name in group:
                combo[name] = i
        yield combo


def plain_prompt(prompt: str, trigger: str | Sequence[str]) -> str:
    """The prompt without its trigger tag(s) (what the picture should show besides the characters)."""
    triggers = [trigger] if isinstance(trigger, str) else list(trigger)
    keys = {tag_key(t) for t in triggers if t}
    if not keys:
        return prompt
    tags = [t for t in Caption.parse(prompt).tags if tag_key(t) not in keys]
    return join_tags(tags)


def pair_prompt(template: str, triggers: Sequence[str], context: str) -> str:
    """A pair's prompt: the pair template with ``{a}``, ``{b}`` the triggers and ``{context}``."""
    text = template.replace("{a}", triggers[0]).replace("{b}", triggers[1]).replace("{context}", context)
    return ", ".join(t.strip() for t in text.split(",") if t.strip())


def character_value(value: str, resolved: Resolved) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A character axis value (``mira``, ``mira+tom``) as (names, triggers)."""
    known = dict(resolved.characters)
    names = tuple(n.strip() for n in str(value).split("+") if n.strip())
    return names, tuple(known.get(n, n) for n in names)


def enumerate_cells(spec: MatrixSpec, resolved: Resolved) -> Layout:
    """Every position of the matrix and the unique cells they show (spec order, zip groups paired)."""
    axes = effective_axes(spec, resolved)
    slots = [n for n in axes if n not in RESERVED and n != PROMPT_AXIS]
    other = [n for n in axes if n not in slots and n != PROMPT_AXIS]
    outer = _groups(other, spec.matrix.zip)
    inner = _groups(slots, spec.matrix.zip)
    m = spec.matrix
    labels = {n: axis_labels(n, v, resolved.checkpoints if n == "checkpoint" else ()) for n, v in axes.items()}
    layout = Layout(
        axes={n: Axis(n, v, *labels[n]) for n, v in axes.items()},
        positions=[],
        cells={},
        trigger=resolved.trigger,
        slots=slots,
    )

    def add(coords: dict[str, int], cell: Cell) -> None:
        cell_id = cell.id
        layout.cells.setdefault(cell_id, cell)
        ordered = tuple((n, coords.get(n, NO_VALUE)) for n in axes)
        layout.positions.append(Position(ordered, cell_id))

    for combo in _combos(outer, axes):
        lora = resolved.checkpoints[combo["checkpoint"]]
        weight = float(axes["weight"][combo["weight"]])
        if lora is None or weight == 0.0:
            lora, weight = None, 0.0
        stack = tuple((r, w) for r, w in resolved.stacks[combo["loras"]] if w != 0.0) if "loras" in axes else ()
        names, triggers = (
            character_value(axes["character"][combo["character"]], resolved) if "character" in axes else ((), ())
        )
        width = resolved.pair_width or resolved.width if len(names) > 1 else resolved.width

        def params(
            prompt: str,
            negative: str,
            combo: dict[str, int] = combo,
            lora: LoraRef | None = lora,
            weight: float = weight,
            stack: tuple[tuple[LoraRef, float], ...] = stack,
            width: int = width,
        ) -> Params:
            return Params(
                base=resolved.base,
                lora=lora,
                weight=weight,
                prompt=prompt,
                negative=negative,
                seed=int(axes["seed"][combo["seed"]]),
                cfg=float(axes["cfg"][combo["cfg"]]) if "cfg" in axes else resolved.cfg,
                steps=int(axes["steps"][combo["steps"]]) if "steps" in axes else resolved.steps,
                sampler=str(axes["sampler"][combo["sampler"]]) if "sampler" in axes else resolved.sampler,
                width=width,
                height=resolved.height,
                stack=stack,
            )

        for slot_combo in _combos(inner, axes):
            values = {n: str(axes[n][i]) for n, i in slot_combo.items()}
            values["trigger"] = triggers[0] if len(triggers) == 1 else resolved.trigger
            if len(triggers) > 1:
                context = pair_prompt("{context}", triggers, fill(m.prompt, {**values, "trigger": ""}))
                prompt = pair_prompt(resolved.pair_template or DEFAULT_PAIR_TEMPLATE, triggers, context)
                plain = context  # what the scene should show besides the two characters
            else:
                prompt = fill(m.prompt, values)
                plain = plain_prompt(prompt, triggers or resolved.trigger)
            cell = Cell(
                params(prompt, fill(m.negative, values)),
                slots=tuple((n, values[n]) for n in slots),
                plain_prompt=plain,
                characters=names,
                triggers=triggers,
            )
            coords = {**combo, **slot_combo}
            if PROMPT_AXIS in axes:
                coords[PROMPT_AXIS] = 0
            add(coords, cell)
        for i, control in enumerate(m.controls):
            negative = fill(m.negative, {"trigger": resolved.trigger})
            cell = Cell(params(control, negative, width=resolved.width), control=i, plain_prompt=control)
            add({**combo, PROMPT_AXIS: i + 1}, cell)
    return layout


def prompt_count(layout: Layout) -> int:
    """How many trigger prompts the matrix draws (slot combinations; zip groups pair), controls not counted."""
    return len(
        {tuple(pos.index(s) for s in layout.slots) for pos in layout.positions if not layout.cells[pos.cell].is_control}
    )


AXIS_WORDS = {"checkpoint": "checkpoint", "weight": "weight", "seed": "seed", "cfg": "cfg value", "steps": "step count"}


def size_breakdown(layout: Layout, zips: Sequence[Sequence[str]] = ()) -> str:
    """How the image count comes about, in numbers that add up.

    ``4 checkpoints × 4 weights × 2 seeds × (4 contexts × 4 styles + 1 control prompt) = 544 grid
    positions, less 102 repeats (weight 0 is the base model: one image for all 4 checkpoints)``.
    """
    axes = layout.axes
    outer = [n for n in axes if n not in layout.slots and n != PROMPT_AXIS and len(axes[n]) > 1]
    factors = [plural(len(axes[n]), AXIS_WORDS.get(n, n)) for n in outer]
    inner: list[str] = []
    inner_n = 1
    for group in _groups(list(layout.slots), [list(z) for z in zips]):
        n = len(axes[group[0]])
        if n > 1:
            inner.append(
                plural(n, AXIS_WORDS.get(group[0], group[0])) if len(group) == 1 else f"{n} {'/'.join(group)} pairs"
            )
        inner_n *= n
    controls = len(axes[PROMPT_AXIS]) - 1 if PROMPT_AXIS in axes else 0
    prompts = " × ".join(inner) or plural(inner_n, "prompt")
    if controls:
        prompts += f" + {plural(controls, 'control prompt')}"
        if factors:
            prompts = f"({prompts})"
    positions = inner_n + controls
    for n in outer:
        positions *= len(axes[n])
    if positions != len(layout.positions):  # a layout made some other way: say only what is sure
        return f"{plural(len(layout.positions), 'grid position')}"
    text = " × ".join([*factors, prompts]) + f" = {plural(positions, 'grid position')}"
    repeats = positions - len(layout.cells)
    if repeats:
        ckpts = len(axes["checkpoint"]) if "checkpoint" in axes else 1
        weight0 = "weight" in axes and any(float(w) == 0.0 for w in axes["weight"].values) and ckpts > 1
        why = (
            f"weight 0 is the base model: one image for {'both' if ckpts == 2 else f'all {ckpts}'} checkpoints"
            if weight0
            else "positions that show the same image"
        )
        text += f", less {plural(repeats, 'repeat')} ({why})"
    return text


# --- views ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    pages: tuple[str, ...]

    def placed(self) -> tuple[str, ...]:
        return self.rows + self.cols + self.pages

    def describe(self) -> str:
        def part(names: tuple[str, ...]) -> str:
            return " × ".join(names) or "-"

        return f"rows {part(self.rows)} · cols {part(self.cols)} · pages {part(self.pages)}"


def default_view(layout: Layout, rows: Sequence[str] = (), cols: Sequence[str] = (), pages: Sequence[str] = ()) -> View:
    """A view from what the spec asks (axes with one value left out): weight across, a page per checkpoint."""
    varying = layout.varying
    cols_ = [a for a in cols if a in varying]
    pages_ = [a for a in pages if a in varying and a not in cols_]
    rows_ = [a for a in rows if a in varying and a not in cols_ + pages_]
    if not cols and not cols_:
        cols_ = [a for a in ("weight", "checkpoint") if a in varying and a not in rows_ + pages_][:1]
    if not pages and not pages_:
        pages_ = [a for a in ("checkpoint",) if a in varying and a not in rows_ + cols_]
    rows_ += [a for a in varying if a not in rows_ + cols_ + pages_]
    return View(tuple(rows_), tuple(cols_), tuple(pages_))


def move_axis(view: View, layout: Layout, part: str, step: int = 1) -> View:
    """Put the next varying axis (``step`` = -1: the previous one) alone on ``part`` ("cols" or "pages").

    The axis that was there goes to the rows; ``pages`` also cycles through "no page axis".
    """
    varying = layout.varying
    current = getattr(view, part)
    choices: list[str | None] = list(varying)
    if part == "pages":
        choices = [None, *choices]
    at = choices.index(current[0]) if current and current[0] in choices else 0 if part == "pages" else -1
    pick = choices[(at + step) % len(choices)] if choices else None
    parts = {"rows": list(view.rows), "cols": list(view.cols), "pages": list(view.pages)}
    for name in current:
        parts["rows"].append(name)
    parts[part] = []
    if pick is not None:
        for k in parts:
            if pick in parts[k]:
                parts[k].remove(pick)
        parts[part] = [pick]
    rows = [a for a in varying if a in parts["rows"]]  # rows keep the axes' own order
    return View(tuple(rows), tuple(parts["cols"]), tuple(parts["pages"]))


Key = tuple[int, ...]


@dataclass
class Grid:
    """Positions laid out for one view: pages × rows × cols of cell ids (sparse)."""

    layout: Layout
    view: View
    pages: list[Key]
    rows: list[Key]
    cols: list[Key]
    at: dict[tuple[Key, Key, Key], str]

    def cell(self, page: int, row: int, col: int) -> str | None:
        if not (0 <= page < len(self.pages) and 0 <= row < len(self.rows) and 0 <= col < len(self.cols)):
            return None
        return self.at.get((self.pages[page], self.rows[row], self.cols[col]))

    def label(self, part: str, key: Key, short: bool = False, sep: str = " · ") -> str:
        names = getattr(self.view, part)
        texts = [self.layout.axes[n].label(i, short) for n, i in zip(names, key, strict=True)]
        return sep.join(t for t in texts if t)

    def row_lines(self, key: Key, short: bool = True) -> list[str]:
        """A row's label, one axis value a line (for the grid's left margin)."""
        return [t for n, i in zip(self.view.rows, key, strict=True) if (t := self.layout.axes[n].label(i, short))] or [
            "-"
        ]

    def page_cells(self, page: int) -> list[str]:
        if not self.pages:
            return []
        pk = self.pages[page]
        return [cid for (p, _r, _c), cid in self.at.items() if p == pk]


def _sort_key(key: Key) -> tuple[int, ...]:
    # NO_VALUE (a control prompt has no slots) sorts after every real value
    return tuple(10**9 if i == NO_VALUE else i for i in key)


def arrange(layout: Layout, view: View) -> Grid:
    pages: set[Key] = set()
    rows: set[Key] = set()
    cols: set[Key] = set()
    at: dict[tuple[Key, Key, Key], str] = {}
    for pos in layout.positions:
        pk = tuple(pos.index(n) for n in view.pages)
        rk = tuple(pos.index(n) for n in view.rows)
        ck = tuple(pos.index(n) for n in view.cols)
        pages.add(pk)
        rows.add(rk)
        cols.add(ck)
        at.setdefault((pk, rk, ck), pos.cell)
    return Grid(
        layout,
        view,
        sorted(pages, key=_sort_key),
        sorted(rows, key=_sort_key),
        sorted(cols, key=_sort_key),
        at,
    )
