"""Several characters in one project: who they are, and which of them an image holds.

lorawb.toml names them under ``[characters]``::

    [characters]
    balance = "equal"            # each character and each pair gets an equal share of the steps
    pair_template = "{a} on the left and {b} on the right, {context}"

    [characters.mira]
    trigger = "zkx_mira"
    invariant = ["short blue hair", "orange jumpsuit"]   # what the trigger carries
    folders = ["10_zkx_mira"]                            # its kohya folder(s) under dataset/

    [characters.tom]
    trigger = "qvr_tom"
    invariant = ["red cap", "green coat"]

Each ``[characters.<name>]`` is a character sheet (lorawb.core.charsheet: the description and
variation lists ``lorawb generate`` draws from) with the character's invariant features and
folders. A joint folder (``5_zkx_mira+qvr_tom``) or a caption naming two triggers holds an
image where both appear.

A project without ``[characters.<name>]`` tables is a one-character project, exactly as before:
one ``Character`` whose trigger is ``[project] trigger`` and whose invariant features are
``[tagger] invariant``. No torch, no Textual here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lorawb.core.captions import phrase_pattern, tag_key
from lorawb.core.charsheet import CharacterSheet
from lorawb.core.layout import folder_repeats

if TYPE_CHECKING:
    from lorawb.core.config import ProjectConfig

BALANCES = ("equal", "by_images")
DEFAULT_PAIR_TEMPLATE = "{a} on the left and {b} on the right, {context}"
JOINER = "+"  # kohya folder of a pair: 5_zkx_mira+qvr_tom


class CharacterSection(CharacterSheet):
    """``[characters.<name>]``: a character sheet with the character's invariant features and folders."""

    invariant: list[str] = Field(
        default_factory=list, description="the character's invariant features (the trigger carries them)"
    )
    folders: list[str] = Field(
        default_factory=list, description="its kohya folders under dataset/ (default: folders named by its trigger)"
    )

    @field_validator("invariant", "folders")
    @classmethod
    def _strip(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for item in v:
            item = " ".join(str(item).split())
            if item and item not in out:
                out.append(item)
        return out


class CharactersSection(BaseModel):
    """``[characters]``: how the characters share a run, and one table per character.

    The characters are the table's other keys (pydantic's typed extras), so an error inside one is
    reported at its own key (``characters.tom.trigger``), as lorawb.toml spells it.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    __pydantic_extra__: dict[str, CharacterSection] = Field(init=False)  # type: ignore[assignment]

    balance: Literal["equal", "by_images"] = Field(
        "equal",
        description="equal: each character and each pair gets the same share of the steps; by_images: as many as "
        "they have images (kohya repeats set by hand still count)",
    )
    pair_template: str = Field(
        DEFAULT_PAIR_TEMPLATE, description="the prompt of a pair ({a}, {b}: the triggers; {context}: the context)"
    )

    @property
    def members(self) -> dict[str, CharacterSection]:
        """The characters by name, in lorawb.toml's order."""
        return dict(self.__pydantic_extra__ or {})

    @field_validator("pair_template")
    @classmethod
    def _has_both(cls, v: str) -> str:
        if "{a}" not in v or "{b}" not in v:
            raise ValueError("the pair template needs both {a} and {b} (the two triggers)")
        return v

    @model_validator(mode="after")
    def _distinct_triggers(self) -> CharactersSection:
        seen: dict[str, str] = {}
        for name, sheet in self.members.items():
            if not sheet.trigger:
                raise ValueError(f"characters.{name}: needs its trigger (trigger = 'zkx_{name}')")
            key = tag_key(sheet.trigger)
            if key in seen:
                raise ValueError(f"characters.{name}: trigger {sheet.trigger!r} is already characters.{seen[key]}'s")
            seen[key] = name
        return self


@dataclass(frozen=True)
class Character:
    """One character of the project, as every part of lorawb sees it."""

    name: str
    trigger: str
    invariant: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The trigger's tag identity (``zkx_mira`` and ``zkx mira`` are one)."""
        return tag_key(self.trigger)


def characters_of(config: ProjectConfig) -> list[Character]:
    """The project's characters in lorawb.toml's order; a one-character project's one character
    (``[project] trigger``, ``[tagger] invariant``); none when it has no trigger at all."""
    section: CharactersSection = config.characters
    if section.members:
        return [
            Character(name, sheet.trigger, tuple(sheet.invariant), tuple(sheet.folders))
            for name, sheet in section.members.items()
        ]
    trigger = config.project.trigger
    if not trigger:
        return []
    return [Character(config.project.name or "character", trigger, tuple(config.tagger.invariant))]


def is_multi(config: ProjectConfig) -> bool:
    return len(config.characters.members) > 1


def folder_concepts(folder_name: str) -> list[str]:
    """The concepts a kohya folder names: ``5_zkx_mira+qvr_tom`` -> ``["zkx_mira", "qvr_tom"]``."""
    _, concept = folder_repeats(folder_name)
    return [c.strip() for c in concept.split(JOINER) if c.strip()]


def named_in(tags: Iterable[str], chars: Sequence[Character]) -> list[str]:
    """The names of the characters whose trigger is among ``tags`` (or in a sentence of four words or more,
    as whole words: prose captions name characters too), in the project's order."""
    tags = list(tags)
    keys = {tag_key(t) for t in tags}
    sentences = [t for t in tags if len(t.split()) >= 4]
    return [c.name for c in chars if c.key in keys or any(phrase_pattern(c.trigger).search(s) for s in sentences)]


def characters_in(rel_folder: str, tags: Iterable[str], chars: Sequence[Character]) -> list[str]:
    """Which characters an image holds: those its folders name (a folder listed in a character's
    ``folders``, or a kohya folder whose concept is the character's trigger, ``+`` for a pair) and
    those whose trigger its caption names. In the project's order."""
    found = set(named_in(tags, chars))
    parts = [p for p in rel_folder.split("/") if p]
    for part in parts:
        concepts = {tag_key(c) for c in folder_concepts(part)}
        for c in chars:
            if part in c.folders or c.key in concepts:
                found.add(c.name)
    return [c.name for c in chars if c.name in found]


def pairs_of(chars: Sequence[Character]) -> list[tuple[Character, Character]]:
    """Every pair of characters, in the project's order."""
    return [(a, b) for i, a in enumerate(chars) for b in chars[i + 1 :]]


def group_label(names: Sequence[str]) -> str:
    """What a group of characters is called in tables and filters: ``mira``, ``mira+tom``, ``none``."""
    return JOINER.join(names) if names else "none"


def lead_triggers(tags: list[str], chars: Sequence[Character]) -> list[str]:
    """``tags`` with the triggers it holds moved to the front, in the project's character order
    (a joint caption leads with both triggers in a stable order); other tags keep their order."""
    by_key = {c.key: i for i, c in enumerate(chars)}
    triggers = sorted((t for t in tags if tag_key(t) in by_key), key=lambda t: by_key[tag_key(t)])
    rest = [t for t in tags if tag_key(t) not in by_key]
    return triggers + rest
