"""Naming one of a list of things on the command line: its name, a unique prefix, or ``last``.

Runs, matrices and sweeps are all picked this way (``lorawb stop last``, ``lorawb matrix show
mira``, ``lorawb sweep report lr``): one rule, one place, the same errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from lorawb.errors import LorawbError
from lorawb.words import plural

T = TypeVar("T")


def pick(
    items: Sequence[T],
    ref: str,
    name: Callable[[T], str],
    *,
    what: tuple[str, str],
    where: Path,
    hint: str,
    error: type[LorawbError] = LorawbError,
    suffix: bool = False,
) -> T:
    """The item named ``ref``: exactly, by a unique prefix (or suffix, with ``suffix``), or the
    last one for ``last``/``latest``. ``what``: the thing's name, singular and plural."""
    if ref in ("last", "latest") and items:
        return items[-1]
    exact = [i for i in items if name(i) == ref]
    if exact:
        return exact[0]
    matches = [i for i in items if name(i).startswith(ref) or (suffix and name(i).endswith(ref))]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise error(f"no {what[0]} {ref!r}", path=where, hint=hint)
    listed = ", ".join(name(i) for i in matches)
    raise error(f"{ref!r} matches {plural(len(matches), what[0], what[1])}: {listed}", path=where)
