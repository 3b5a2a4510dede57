"""Counted nouns for messages: ``plural(1, "caption")`` is ``1 caption``, ``plural(2, "caption")`` ``2 captions``.

One helper, used by every message that counts something, so no message says "1 captions"
or hedges with "image(s)". Irregular plurals are given: ``plural(n, "match", "matches")``.
``size_text`` says a byte count the same way everywhere (``812 bytes``, ``64 KB``, ``50.0 MB``).
"""

from __future__ import annotations


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
