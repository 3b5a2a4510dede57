"""The text a matrix cell's or a generated candidate's PNG carries: lorawb.core.pngtext writes it
(A1111's ``parameters`` and lorawb's JSON record), the one writer training samples use too, so an
image regenerates from itself even when its folder's records are gone. No torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorawb.core.pngtext import png_bytes, png_record

__all__ = ["png_bytes", "record_from_png"]


def record_from_png(path: Path) -> dict[str, Any] | None:
    """The cell (or candidate) record a PNG carries: the one whose id is the file's stem, else None."""
    rec = png_record(path)
    return rec if rec is not None and rec.get("id") == path.stem else None
