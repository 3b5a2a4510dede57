"""The cast of a several-character project: who each image holds, counts per character and per pair,
the context x style cells each has, and the caption checks of the doctor.

Every view asks here (the app's header, Triage's ``character`` and ``joint`` filters, the Captions
tag table and composition table, `lorawb doctor`), so they count alike:

- an image holds the characters its folders name and those whose trigger its caption names
  (lorawb.core.characters.characters_in);
- a character's row counts the images holding it **alone**; a pair's row the images holding **both**
  (an image of three characters counts for each of its pairs); ``joint`` is every image holding two
  or more.

The doctor's warnings (docs/dataset.md, "Several characters"):

- **thin**: a character with fewer than ``THIN_CHARACTER`` images alone, a pair with fewer than
  ``THIN_PAIR`` images together, or either with every image naming the same one value of a tag group
  (all in one context, all one style) while the group has other values;
- **trigger missing**: a caption of an image a folder gives to a character, without that character's
  trigger;
- **foreign invariant**: a caption carrying a character's invariant tag without that character's
  trigger (B's red cap on an image of A alone teaches A's trigger B's cap: bleed), unless the tag is
  also an invariant of a character the image holds;
- **invariant missing**: a caption naming a character's trigger without one of its invariant tags
  that most of that character's other captions spell out (a project that captions the invariant
  features, against the usual advice, should at least do it every time).

A one-character project has no cast: ``Cast.of`` returns None and every view is as before.
No torch, no Textual here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from lorawb.core.captions import tag_key, tags_of
from lorawb.core.characters import Character, characters_in, group_label, named_in, pairs_of

THIN_CHARACTER = 10  # images of a character alone: under this, a LoRA rarely holds the identity
THIN_PAIR = 5  # images of a pair together: under this, the pair's joint prompts are hardly taught
MOSTLY = 0.5  # an invariant tag spelled out in more than this share of a character's captions is expected
JOINT = "joint"  # the filter word for images holding two characters or more


@dataclass(frozen=True)
class Held:
    """One image and the characters it holds (names, in the project's order)."""

    image: str  # its path as the caller names it
    folder: str  # its folder (any prefix: each part is looked at)
    tags: tuple[str, ...]
    names: tuple[str, ...]
    named: tuple[str, ...] = ()  # of which the caption names (by trigger)

    @property
    def label(self) -> str:
        return group_label(self.names)

    @property
    def joint(self) -> bool:
        return len(self.names) > 1


def held(image: str, folder: str, text: str | None, chars: Sequence[Character]) -> Held:
    """Whom image ``image`` (in ``folder``, captioned ``text``) holds."""
    tags, names, named = _who(folder, text or "", tuple(chars))
    return Held(image, folder, tags, names, named)


@lru_cache(maxsize=1 << 16)
def _who(folder: str, text: str, chars: tuple[Character, ...]) -> tuple[tuple[str, ...], ...]:
    # Cached: the header, Triage's filter and the Captions tables ask again for the same 10,000 captions.
    tags = tuple(tags_of(text))
    return tags, tuple(characters_in(folder, tags, chars)), tuple(named_in(tags, chars))


def folder_of(image: str) -> str:
    """The folder part of an image path (``dataset/10_zkx_mira/a.png`` -> ``dataset/10_zkx_mira``)."""
    return image.rsplit("/", 1)[0] if "/" in image else ""


def matches(h: Held, which: str) -> bool:
    """Whether image ``h`` is in the filter ``which``: a character's name (alone or with others), a pair
    ``mira+tom`` (both, with or without others), ``joint`` (two or more), ``none`` (no character)."""
    if which == JOINT:
        return h.joint
    if which == "none":
        return not h.names
    wanted = [w for w in which.split("+") if w]
    return bool(wanted) and all(w in h.names for w in wanted)


def filter_words(chars: Sequence[Character]) -> list[str]:
    """What a character filter accepts: every name, every pair, ``joint``, ``none``."""
    return [c.name for c in chars] + [group_label((a.name, b.name)) for a, b in pairs_of(chars)] + [JOINT, "none"]


def check_filter_word(which: str, chars: Sequence[Character]) -> str:
    """``which`` as a filter word (case and spaces forgiven), or ValueError naming the accepted ones."""
    if len(chars) < 2:
        raise ValueError("this project has no [characters.<name>] tables (one character): no character filter")
    words = filter_words(chars)
    norm = "+".join(p.strip() for p in which.strip().lower().split("+"))
    for w in words:
        if w.lower() == norm:
            return w
    raise ValueError(f"unknown character {which!r}: use one of " + ", ".join(words))


@dataclass
class Row:
    """A character alone or a pair together: its images and the tag-group cells they cover."""

    label: str
    names: tuple[str, ...]
    images: list[str] = field(default_factory=list)
    values: dict[str, Counter[str]] = field(default_factory=dict)  # group -> value -> images naming it
    cells: set[tuple[str, str]] = field(default_factory=set)  # (first group value, second group value)

    @property
    def count(self) -> int:
        return len(self.images)

    @property
    def pair(self) -> bool:
        return len(self.names) > 1


@dataclass
class Finding:
    image: str
    note: str


@dataclass
class Cast:
    """Counts per character and per pair over a set of images, and what the doctor warns of."""

    chars: list[Character]
    groups: dict[str, list[str]]  # [tags.groups]
    rows: list[Row]
    total: int
    joint: int  # images holding two characters or more
    none: list[str] = field(default_factory=list)  # images holding no character
    warnings: list[str] = field(default_factory=list)  # thin characters and pairs
    findings: list[Finding] = field(default_factory=list)  # per-caption problems

    @classmethod
    def of(
        cls,
        items: Iterable[Held],
        chars: Sequence[Character],
        groups: dict[str, list[str]] | None = None,
        *,
        checks: bool = True,
    ) -> Cast | None:
        """The cast over ``items`` (``held`` made each), or None for a project of fewer than two characters.
        ``checks``: also the doctor's warnings and caption findings (the header and Triage need only counts)."""
        if len(chars) < 2:
            return None
        return build(list(items), list(chars), dict(groups or {}), checks=checks)

    def row(self, label: str) -> Row | None:
        return next((r for r in self.rows if r.label == label), None)

    @property
    def cell_groups(self) -> tuple[str, str] | None:
        """The two tag groups whose cells are counted (the first two of [tags.groups]: context x style)."""
        names = list(self.groups)
        return (names[0], names[1]) if len(names) >= 2 else None

    @property
    def cells_total(self) -> int:
        pair = self.cell_groups
        return len(self.groups[pair[0]]) * len(self.groups[pair[1]]) if pair else 0

    def summary(self) -> str:
        """``mira 12 · tom 9 · mira+tom 4``: the header's words."""
        return " · ".join(f"{r.label} {r.count}" for r in self.rows)


def _names(tags: Iterable[str]) -> set[str]:
    return {tag_key(t) for t in tags}


def build(items: list[Held], chars: list[Character], groups: dict[str, list[str]], *, checks: bool = True) -> Cast:
    rows = [Row(c.name, (c.name,)) for c in chars] + [
        Row(group_label((a.name, b.name)), (a.name, b.name)) for a, b in pairs_of(chars)
    ]
    by_label = {r.label: r for r in rows}
    value_keys = {g: [(v, tag_key(v)) for v in values] for g, values in groups.items()}
    cell_pair = list(groups)[:2] if len(groups) >= 2 else None
    cast = Cast(chars, groups, rows, len(items), 0)
    for h in items:
        keys = _names(h.tags)
        named = {g: [v for v, k in vk if k in keys] for g, vk in value_keys.items()}
        if not h.names:
            cast.none.append(h.image)
            continue
        cast.joint += h.joint
        targets = (
            [by_label[h.names[0]]]
            if len(h.names) == 1
            else [by_label[group_label((a, b))] for i, a in enumerate(h.names) for b in h.names[i + 1 :]]
        )
        for r in targets:
            r.images.append(h.image)
            for g, vs in named.items():
                r.values.setdefault(g, Counter()).update(vs)
            if cell_pair:
                r.cells.update((a, b) for a in named[cell_pair[0]] for b in named[cell_pair[1]])
    if checks:
        cast.warnings = thin_warnings(cast)
        cast.findings = caption_findings(items, chars)
    return cast


def thin_warnings(cast: Cast) -> list[str]:
    out: list[str] = []
    for r in cast.rows:
        floor = THIN_PAIR if r.pair else THIN_CHARACTER
        what = f"the pair {r.label}" if r.pair else r.label
        alone = "together" if r.pair else "alone"
        if r.count < floor:
            n = f"{r.count} images" if r.count else "no images"
            out.append(f"{what}: {n} {alone}, under {floor}: thin (draw or promote more)")
        for g, values in cast.groups.items():
            seen = [v for v in values if r.values.get(g, Counter())[v]]
            if r.count >= 2 and len(seen) == 1 and len(values) > 1:
                out.append(f"{what}: every image with a {g} is {seen[0]!r} (all in one {g})")
    return out


def caption_findings(items: list[Held], chars: list[Character]) -> list[Finding]:
    """The per-caption checks (see the module's docstring), in image order."""
    by_name = {c.name: c for c in chars}
    spelled: dict[str, Counter[str]] = {c.name: Counter() for c in chars}  # invariant tag -> captions naming c
    naming: Counter[str] = Counter()
    keyed = [(h, _names(h.tags)) for h in items]
    for h, keys in keyed:
        for c in chars:
            if c.name in h.named:
                naming[c.name] += 1
                spelled[c.name].update(inv for inv in c.invariant if tag_key(inv) in keys)
    expected = {
        c.name: [inv for inv in c.invariant if naming[c.name] and spelled[c.name][inv] / naming[c.name] > MOSTLY]
        for c in chars
    }
    out: list[Finding] = []
    order = {c.name: i for i, c in enumerate(chars)}
    for h, keys in keyed:
        if not h.tags:
            continue  # no caption: the doctor lists it already
        lead = sorted(h.named, key=order.__getitem__)
        if lead and not h.tags[0].count(" ") >= 3:  # tag captions (a sentence says it in its own order)
            head = [tag_key(t) for t in h.tags[: len(lead)]]
            if head != [by_name[n].key for n in lead]:
                want = ", ".join(by_name[n].trigger for n in lead)
                out.append(Finding(h.image, f"the triggers do not lead: start with {want!r}"))
        mine = {tag_key(inv) for n in h.names for inv in by_name[n].invariant}
        for name in h.names:
            c = by_name[name]
            if name not in h.named:
                out.append(Finding(h.image, f"holds {name} (its folder) but the caption lacks {c.trigger!r}"))
                continue
            missing = [inv for inv in expected[name] if tag_key(inv) not in keys]
            if missing:
                out.append(
                    Finding(
                        h.image,
                        f"names {c.trigger!r} without {', '.join(missing)} (most of {name}'s captions spell it out)",
                    )
                )
        for c in chars:
            if c.name in h.names:
                continue
            foreign = [inv for inv in c.invariant if tag_key(inv) in keys and tag_key(inv) not in mine]
            if foreign:
                who = "+".join(h.names) or "no character"
                out.append(
                    Finding(
                        h.image,
                        f"carries {c.name}'s {', '.join(foreign)} without {c.trigger!r} (an image of {who}: "
                        f"{c.name}'s look would bleed into it)",
                    )
                )
    return out
