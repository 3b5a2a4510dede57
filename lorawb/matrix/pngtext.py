"""The text a drawn PNG carries: A1111's ``parameters`` (read by A1111/Forge and most image
viewers) and lorawb's own record (``lorawb``: every parameter that made it, JSON), so an image
regenerates from itself even when its folder's records are gone. Matrix cells and generated
candidates both write it. No torch here.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from lorawb.matrix.cells import Params


def infotext(p: Params) -> str:
    """The ``parameters`` text A1111/Forge and most image viewers read (``<lora:name:w>`` in the prompt)."""
    prompt = p.prompt
    if p.lora is not None:
        prompt += f" <lora:{Path(p.lora.path).stem}:{p.weight:g}>"
    lines = [prompt]
    if p.negative:
        lines.append(f"Negative prompt: {p.negative}")
    lines.append(
        f"Steps: {p.steps}, Sampler: {p.sampler.upper()}, CFG scale: {p.cfg:g}, Seed: {p.seed}, "
        f"Size: {p.width}x{p.height}, Model: {Path(p.base).name}"
    )
    return "\n".join(lines)


def png_bytes(image: Any, record: dict[str, Any]) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", infotext(Params.from_dict(record["params"])))
    info.add_text("lorawb", json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def record_from_png(path: Path) -> dict[str, Any] | None:
    """The cell record a PNG carries (None when it carries none)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            text = im.text.get("lorawb") if hasattr(im, "text") else None  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return None
    try:
        rec = json.loads(text) if text else None
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and rec.get("id") == path.stem else None
