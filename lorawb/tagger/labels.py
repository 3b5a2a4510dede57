"""What a backend says about one image: labels with a category and (where measured) a confidence.

Also the tag list of a WD-style tagger (``selected_tags.csv``: ``tag_id,name,category,count``
in the v1.4 / v3 layout that kohya and taggui read; category 9 rating, 0 general,
4 character) and how a model's tag name is written in a caption (underscores to spaces,
kaomoji such as ``^_^`` kept as they are).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from lorawb.core.captions import tag_key
from lorawb.errors import ModelError

GENERAL = "general"
CHARACTER = "character"
RATING = "rating"
CAPTION = "caption"  # a sentence from a captioning model
CATEGORIES = {"0": GENERAL, "4": CHARACTER, "9": RATING}  # WD's; others (artist, meta...) count as general


@dataclass(frozen=True)
class Label:
    """One thing a model sees: a tag as the model names it (``blue_hair``), or a sentence."""

    name: str
    score: float | None  # None: the backend measures no confidence for it
    category: str = GENERAL

    def to_json(self) -> list[object]:
        return [self.name, self.score, self.category]

    @classmethod
    def from_json(cls, row: list[object]) -> Label:
        name, score, category = row
        return cls(str(name), None if score is None else float(score), str(category))  # type: ignore[arg-type]


Prediction = tuple[Label, ...]


# --- tag names ------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]{2}")  # two letters in a row: a word, so not a face like o_o or ^_^


def is_kaomoji(name: str) -> bool:
    """``^_^``, ``o_o``, ``>_<``, ``(o)_(o)``: the underscore is the mouth and must stay."""
    return "_" in name and len(name) <= 8 and not _WORD.search(name)


def caption_name(name: str, *, keep_underscores: bool = False) -> str:
    """A model's tag as a caption writes it: ``blue_hair`` -> ``blue hair`` (kaomoji kept); commas escaped."""
    if not keep_underscores and not is_kaomoji(name):
        name = name.replace("_", " ").strip()
    return name.replace(",", "\\,")  # a comma would split the tag in two


def match_key(tag: str) -> str:
    """What a tag is matched by in the tagger's lists: the caption tag identity, spelled as a caption writes it.

    ``blue_hair``, ``Blue Hair`` and ``blue hair`` in [tagger] exclude / invariant / keep / replace
    all name the model's ``blue_hair``.
    """
    return tag_key(caption_name(tag.strip()))


# --- selected_tags.csv ------------------------------------------------------------------

REQUIRED_COLUMNS = ("name", "category")


def read_selected_tags(path: Path) -> list[tuple[str, str]]:
    """(name, category) per output of the model, in the file's order; ModelError names what is wrong."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise ModelError(
                    f"no {' and no '.join(repr(c) for c in missing)} column (the header is {','.join(header) or 'empty'})",
                    path=path,
                    line=1,
                    hint="a WD tagger's selected_tags.csv starts with tag_id,name,category,count",
                )
            rows = []
            for row in reader:
                name = (row.get("name") or "").strip()
                if not name:
                    raise ModelError("a row without a tag name", path=path, line=reader.line_num)
                rows.append((name, CATEGORIES.get((row.get("category") or "").strip(), GENERAL)))
    except OSError as exc:
        raise ModelError(f"cannot read the tag list: {exc.strerror or exc}", path=path) from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ModelError(f"not a CSV tag list: {exc}", path=path) from exc
    if not rows:
        raise ModelError(
            "the tag list is empty", path=path, hint="one row per model output: tag_id,name,category,count"
        )
    return rows
