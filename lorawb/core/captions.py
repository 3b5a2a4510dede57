"""Caption text <-> tags: parsing, matching and serializing one caption.

A caption is comma-separated tags (``zkx_mira, 1girl, (red scarf:1.2), forest``)
or a sentence (no commas: one tag). Parsing keeps every tag's text as written
(weights, brackets, escapes) and its order; only the separators are normalised
to ``", "`` when a caption is rewritten. Tags are *matched* by one key (``tag_key``) that
ignores case, the ``_``/space difference of booru tags, repeated spaces and prompt-weight
syntax, so ``(Red Scarf:1.2)``, ``[red scarf]``, ``red_scarf`` and ``red  scarf`` are all the
tag ``red scarf``. Every view (captions, tag statistics, Triage filters, the composition
table, the doctor, the trainer's trigger handling) compares tags by this key.

Whitespace around the caption (a trailing newline, say) is kept as it was.
Commas inside brackets do not split tags: ``(red scarf, blue hat:1.2)`` is one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WEIGHT = re.compile(r"^\(\s*(?P<name>.*?)\s*:\s*[-+]?(?:\d+\.?\d*|\.\d+)\s*\)$", re.S)
_PAIRS = {"(": ")", "[": "]", "{": "}"}
_SPACES = re.compile(r"\s+")
_SPECIAL = re.compile(r"[()\[\]{}\\]")
_ODD_SPACE = re.compile(r"\s\s|[^\S ]|_")


def split_tags(body: str) -> list[str]:
    """Split on commas outside brackets; each tag stripped; empty tags kept (``a,,b`` has three)."""
    if not body.strip():
        return []
    if not _SPECIAL.search(body):  # the common case, at C speed
        return [t.strip() for t in body.split(",")]
    tags: list[str] = []
    depth = 0
    start = 0
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c == "\\":
            i += 2  # an escaped bracket or comma is part of the tag
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            tags.append(body[start:i].strip())
            start = i + 1
        i += 1
    tags.append(body[start:].strip())
    return tags


def tags_of(text: str) -> list[str]:
    """The tags of a caption text for counting and matching: line ends read as commas, empty tags dropped."""
    return [t for t in split_tags(text.replace("\r", "").replace("\n", ",")) if t]


def name_span(tag: str) -> tuple[int, int]:
    """Where the tag's name is inside its text: ``(red scarf:1.2)`` -> the span of ``red scarf``.

    Replacing that span renames a tag and keeps its weight and brackets.
    """
    start, end = 0, len(tag)
    while True:
        inner = tag[start:end]
        if not _encloses(inner):
            return start, end
        m = _WEIGHT.match(inner)
        if m:
            start, end = start + m.start("name"), start + m.end("name")
            continue
        if _PAIRS.get(inner[0]) == inner[-1]:
            stripped = inner[1:-1]
            lead = len(stripped) - len(stripped.lstrip())
            trail = len(stripped) - len(stripped.rstrip())
            start, end = start + 1 + lead, end - 1 - trail
            continue
        return start, end


def _encloses(s: str) -> bool:
    """True when the bracket opening ``s`` is closed by its last character: ``(a:1)`` yes, ``(a) (b)`` no."""
    if len(s) < 2 or s[0] not in _PAIRS:
        return False
    depth = 0
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
        i += 1
    return False


def tag_name(tag: str) -> str:
    """The tag without weight syntax: ``((red scarf:1.2))`` -> ``red scarf``."""
    s, e = name_span(tag)
    return tag[s:e]


def tag_key(tag: str) -> str:
    """What two tags must share to be the same tag (the one tag identity of lorawb).

    The name without weight syntax, ``_`` read as a space (booru tags and taggers write
    ``blue_hair``, people type ``blue hair``), runs of spaces collapsed, case-folded:
    ``blue_hair``, ``Blue Hair``, ``(blue hair:1.2)`` all have the key ``blue hair``.
    """
    key = _KEYS.get(tag)
    if key is None:
        name = tag_name(tag) if tag[:1] in _PAIRS else tag
        if _ODD_SPACE.search(name):
            name = _SPACES.sub(" ", name.replace("_", " ")).strip()
        key = name.casefold()
        if len(_KEYS) > 200_000:  # a vocabulary is a few thousand tags; this only bounds odd input
            _KEYS.clear()
        _KEYS[tag] = key
    return key


_KEYS: dict[str, str] = {}  # tag text -> key: datasets repeat the same few thousand tags


def rename_tag(tag: str, new_name: str) -> str:
    """Swap a tag's name, keeping its weight and brackets: ``(red scarf:1.2)`` -> ``(blue scarf:1.2)``."""
    s, e = name_span(tag)
    return tag[:s] + new_name + tag[e:]


@dataclass(frozen=True)
class Caption:
    """One caption's tags, with the whitespace that surrounded the caption kept for writing back."""

    tags: tuple[str, ...]
    lead: str = ""
    trail: str = ""

    @classmethod
    def parse(cls, text: str) -> Caption:
        body = text.strip()
        if not body:
            return cls((), "", text)
        i = len(text) - len(text.lstrip())
        return cls(tuple(split_tags(body)), text[:i], text[i + len(body) :])

    @property
    def body(self) -> str:
        return join_tags(self.tags)

    def text(self) -> str:
        return self.lead + self.body + self.trail

    def with_tags(self, tags: list[str] | tuple[str, ...]) -> Caption:
        return Caption(tuple(tags), self.lead, self.trail)

    @property
    def keys(self) -> list[str]:
        return [tag_key(t) for t in self.tags]

    def has(self, tag: str) -> bool:
        return tag_key(tag) in self.keys

    @property
    def is_sentence(self) -> bool:
        """A caption of a single tag with several words (prose, not tags)."""
        return len(self.tags) == 1 and len(self.tags[0].split()) >= 4


def join_tags(tags: list[str] | tuple[str, ...]) -> str:
    return ", ".join(tags)


def normalize(tag: str) -> str:
    """A tag as typed by a user: stripped, inner whitespace collapsed (weights untouched)."""
    return _SPACES.sub(" ", tag).strip()


def starts_with_phrase(text: str, phrase: str) -> bool:
    """True when ``text`` starts with ``phrase`` as whole words (``zkx_mira stands`` starts with ``zkx_mira``)."""
    if not phrase:
        return False
    # The tag identity's reading of ``_`` as a space (one character for one: the lengths match).
    if not text.replace("_", " ").casefold().startswith(phrase.replace("_", " ").casefold()):
        return False
    rest = text[len(phrase) :]
    return not rest or not (rest[0].isalnum() or rest[0] == "_")


def trigger_index(caption: Caption, trigger: str) -> int | None:
    """Where the trigger is: the index of the tag that is the trigger, or 0 when a sentence starts with it."""
    return trigger_position(caption.tags, trigger)


def trigger_position(tags: list[str] | tuple[str, ...], trigger: str) -> int | None:
    key = tag_key(trigger)
    for i, t in enumerate(tags):
        if tag_key(t) == key:
            return i
    if tags and starts_with_phrase(tag_name(tags[0]), trigger):
        return 0
    return None


def leads_with_trigger(caption: Caption, trigger: str) -> bool:
    return trigger_index(caption, trigger) == 0


def phrase_pattern(phrase: str) -> re.Pattern[str]:
    """A regex matching ``phrase`` as whole words, case-insensitively (``bar`` not in ``barn``).

    Words may be joined by spaces or ``_``, as in the tag identity: ``zkx_mira`` matches ``zkx mira``.
    """
    words = [re.escape(w) for w in re.split(r"[\s_]+", phrase.strip()) if w]
    return re.compile(r"(?<![\w])" + r"[\s_]+".join(words) + r"(?![\w])", re.IGNORECASE)
