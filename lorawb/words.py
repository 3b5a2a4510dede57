"""Counted nouns for messages: ``plural(1, "caption")`` is ``1 caption``, ``plural(2, "caption")`` ``2 captions``.

One helper, used by every message that counts something, so no message says "1 captions"
or hedges with "image(s)". Irregular plurals are given: ``plural(n, "match", "matches")``.
``size_text`` says a byte count the same way everywhere (``812 bytes``, ``64 KB``, ``50.0 MB``).
"""

from __future__ import annotations

import re


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and the noun in the number it takes: 1 → singular, anything else (0 too) → plural."""
    return f"{n} {noun(n, word, many)}"


def noun(n: int, word: str, many: str | None = None) -> str:
    """The noun alone, singular for 1 and plural otherwise (``many`` defaults to ``word + "s"``)."""
    if n == 1:
        return word
    return many if many is not None else word + "s"


def size_text(n: int) -> str:
    """A byte count as people read it: ``812 bytes``, ``64 KB``, ``50.0 MB`` (1 KB = 1024 bytes)."""
    if n < 1024:
        return plural(n, "byte")
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def fit_name(name: str, width: int) -> str:
    """A file name in ``width`` characters that still tells it from its neighbours: the extension goes
    first, then the middle; the start up to its first number and the end stay
    (``mira_01_forest.png`` → ``mira_01…rest``, ``tour-3fa2c1d9e0.png`` → ``tour-3…1d9e0``)."""
    if len(name) <= width:
        return name
    stem, dot, _ext = name.rpartition(".")
    if dot and stem and len(stem) <= width:
        return stem
    base = stem if dot and stem else name
    if width <= 1:
        return base[:width]
    first_number = re.search(r"\d+", base)
    head = first_number.end() if first_number else 0
    if not 0 < head <= width - 4:
        head = (width - 1) // 2
    tail = width - 1 - head
    return base[:head] + "…" + base[len(base) - tail :]


def fit_words(text: str, width: int) -> str:
    """``text`` in ``width`` characters by whole words (never half a word or number): ``id .67 pf .80``
    tightens to ``id.67 pf.80`` first, then drops words from the end."""
    if len(text) <= width:
        return text
    words = text.split(" ")
    tight: list[str] = []
    for w in words:
        if tight and w[:1] in ".-0123456789" and tight[-1].isalpha():
            tight[-1] += w  # a key and its number: "id" ".67" -> "id.67"
        else:
            tight.append(w)
    out = ""
    for w in tight:
        candidate = f"{out} {w}" if out else w
        if len(candidate) > width:
            break
        out = candidate
    return out
