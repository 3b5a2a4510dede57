"""Dataset composition: does the character appear across every context and style?

``lorawb.toml`` names tag groups::

    [tags.groups]
    context = ["forest", "spaceship", "bar", "beach"]
    style = ["watercolor", "pixel art", "photo"]

For each group this counts the captions naming each value, lists the captions naming
no value of the group, and for each pair of groups (context x style) counts every
combination and names the empty and thin ones: the gaps to fill before training.

A value counts for a caption when it is one of its tags (weights and case ignored),
or appears as whole words inside a sentence (a tag of four or more words), so prose
captions are counted too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

from lorawb.core.caption_ops import CaptionFile
from lorawb.core.captions import phrase_pattern, tag_key
from lorawb.core.cast import folder_of, held
from lorawb.core.characters import Character, group_label, pairs_of
from lorawb.errors import CaptionError

CHARACTER = "character"  # the characters' group in a several-character project


@dataclass
class PairTable:
    rows: str  # group names
    cols: str
    row_values: list[str]
    col_values: list[str]
    counts: dict[tuple[str, str], int]
    members: dict[tuple[str, str], list[str]]  # images in each cell
    threshold: int  # a non-empty cell below this is thin

    @property
    def empty(self) -> list[tuple[str, str]]:
        return [cell for cell, n in self.counts.items() if n == 0]

    @property
    def thin(self) -> list[tuple[str, str]]:
        return [cell for cell, n in self.counts.items() if 0 < n < self.threshold]

    @property
    def gaps(self) -> list[tuple[str, str]]:
        """The empty and thin cells, in table order: what to draw more of."""
        return [cell for cell, n in self.counts.items() if n < self.threshold]


@dataclass
class Composition:
    groups: dict[str, list[str]]
    total: int
    value_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    value_members: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)  # group -> images naming none of its values
    pairs: list[PairTable] = field(default_factory=list)
    # Several characters: the context x style cells (the first two tag groups) each character and pair has.
    cell_groups: tuple[str, str] | None = None
    cells: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def cells_total(self) -> int:
        if self.cell_groups is None:
            return 0
        a, b = self.cell_groups
        return len(self.groups_all[a]) * len(self.groups_all[b])

    groups_all: dict[str, list[str]] = field(default_factory=dict)  # every group, chosen or not


class _Matcher:
    def __init__(self, value: str) -> None:
        self.key = tag_key(value)
        self.pattern = phrase_pattern(value)

    def __call__(self, cf: CaptionFile) -> bool:
        if self.key in cf.keys:
            return True
        return any(len(t.split()) >= 4 and self.pattern.search(t) for t in cf.caption.tags)


def value_matches(cf: CaptionFile, value: str) -> bool:
    """Whether a caption names a group value (a tag, or words inside a sentence)."""
    return _Matcher(value)(cf)


def pick_groups(all_groups: dict[str, list[str]], by: list[str] | None) -> dict[str, list[str]]:
    if not all_groups:
        raise CaptionError(
            "no tag groups in lorawb.toml",
            hint='add e.g. [tags.groups] context = ["forest", "bar"] and style = ["watercolor", "photo"]',
        )
    if not by:
        return dict(all_groups)
    unknown = [g for g in by if g not in all_groups]
    if unknown:
        raise CaptionError(f"unknown tag group {unknown[0]!r}", hint="groups in lorawb.toml: " + ", ".join(all_groups))
    if len(by) > 2:
        raise CaptionError("--by takes one group or a pair of groups, e.g. --by context,style")
    return {g: all_groups[g] for g in by}


def character_group(groups: dict[str, list[str]]) -> str:
    """The name of the characters' group beside [tags.groups] (``character``, unless a tag group has it)."""
    return next(n for n in (CHARACTER, "characters", "cast") if n not in groups)


def composition(
    files: list[CaptionFile],
    groups: dict[str, list[str]],
    by: list[str] | None = None,
    chars: Sequence[Character] = (),
) -> Composition:
    """Counts per group value, per pair of groups (all pairs, or the pair named by ``by``), and the gaps.

    With several characters (``chars``), a first group ``character`` holds each character (its images
    alone) and each pair (its images together), so ``character x context`` shows which contexts each
    character and each pair has, with its thin and empty cells (lorawb.core.cast counts alike).
    """
    held_by: dict[str, set[int]] = {}
    if len(chars) > 1 and groups:
        name = character_group(groups)
        labels = [c.name for c in chars] + [group_label((a.name, b.name)) for a, b in pairs_of(chars)]
        held_by = {label: set() for label in labels}
        for i, cf in enumerate(files):
            h = held(cf.image, folder_of(cf.image), cf.text, chars)
            for label in (
                [h.label]
                if len(h.names) == 1
                else [group_label((a, b)) for j, a in enumerate(h.names) for b in h.names[j + 1 :]]
            ):
                held_by[label].add(i)
        groups = {name: labels, **groups}
    chosen = pick_groups(groups, by)
    comp = Composition(groups=chosen, total=len(files))
    hits: dict[str, dict[str, set[int]]] = {}
    for g, values in chosen.items():
        hits[g] = {}
        named: set[int] = set()
        for v in values:
            if held_by and g == next(iter(groups)):
                idx = held_by[v]
            else:
                m = _Matcher(v)
                idx = {i for i, cf in enumerate(files) if m(cf)}
            hits[g][v] = idx
            named |= idx
        comp.value_counts[g] = {v: len(hits[g][v]) for v in values}
        comp.value_members[g] = {v: [files[i].image for i in sorted(hits[g][v])] for v in values}
        comp.missing[g] = [cf.image for i, cf in enumerate(files) if i not in named]
    for a, b in combinations(list(chosen), 2):
        counts: dict[tuple[str, str], int] = {}
        members: dict[tuple[str, str], list[str]] = {}
        for va in chosen[a]:
            for vb in chosen[b]:
                idx = sorted(hits[a][va] & hits[b][vb])
                counts[(va, vb)] = len(idx)
                members[(va, vb)] = [files[i].image for i in idx]
        both = len(set().union(*hits[a].values()) & set().union(*hits[b].values())) if counts else 0
        cells = max(1, len(chosen[a]) * len(chosen[b]))
        # Thin: fewer than half an even share of the images that name both groups (and at least 2).
        threshold = max(2, math.ceil(both / cells / 2))
        comp.pairs.append(PairTable(a, b, list(chosen[a]), list(chosen[b]), counts, members, threshold))
    tag_groups = [g for g in groups if not (held_by and g == next(iter(groups)))]
    if held_by and len(tag_groups) >= 2:
        a, b = tag_groups[:2]
        comp.groups_all = dict(groups)
        comp.cell_groups = (a, b)
        named = {g: {v: {i for i, cf in enumerate(files) if _Matcher(v)(cf)} for v in groups[g]} for g in (a, b)}
        comp.cells = {
            label: [(va, vb) for va in groups[a] for vb in groups[b] if named[a][va] & named[b][vb] & idx]
            for label, idx in held_by.items()
        }
    return comp


def pair_gaps(
    files: list[CaptionFile], rows: tuple[str, list[str]], cols: tuple[str, list[str]]
) -> list[tuple[str, str]]:
    """The (row value, column value) pairs the captions lack, empty or thin: what to draw more of
    (``lorawb matrix new --fill-gaps``, ``lorawb generate --lora``)."""
    return composition(files, dict([rows, cols])).pairs[0].gaps
