"""What a generated PNG says about itself: the one writer for matrix cells and training samples.

Two text chunks, as image viewers and other tools read them:

- ``parameters``: AUTOMATIC1111/Forge's infotext (the prompt with ``<lora:name:weight>``, a
  ``Negative prompt:`` line, then ``Steps: …, Sampler: …, CFG scale: …, Seed: …, Size: WxH,
  Model: …``), which A1111's PNG Info, ComfyUI's loaders and most viewers show;
- ``lorawb``: the whole JSON record of the image (every parameter that made it, and where it
  comes from: a matrix cell's id, or a run's id, step and checkpoint).

``params`` is the matrix's ``Params.as_dict()`` shape: base, lora ({path, label, step} or None),
weight, loras (the LoRAs applied together: [{path, label, step, weight}], optional), prompt,
negative, seed, cfg, steps, sampler, width, height.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RECORD_KEY = "lorawb"


def infotext(params: Mapping[str, Any]) -> str:
    """The ``parameters`` text A1111/Forge and most image viewers read."""
    prompt = str(params["prompt"])
    lora = params.get("lora")
    if lora and lora.get("path"):
        prompt += f" <lora:{Path(lora['path']).stem}:{float(params.get('weight', 1.0)):g}>"
    for each in params.get("loras") or ():  # the matrix's loras axis: several applied together
        if each.get("path"):
            prompt += f" <lora:{Path(each['path']).stem}:{float(each.get('weight', 1.0)):g}>"
    lines = [prompt]
    if params.get("negative"):
        lines.append(f"Negative prompt: {params['negative']}")
    lines.append(
        f"Steps: {params['steps']}, Sampler: {str(params['sampler']).upper()}, CFG scale: {float(params['cfg']):g}, "
        f"Seed: {params['seed']}, Size: {params['width']}x{params['height']}, Model: {Path(str(params['base'])).name}"
    )
    return "\n".join(lines)


def png_bytes(image: Any, record: Mapping[str, Any]) -> bytes:
    """``image`` (a PIL image) as PNG bytes carrying ``record`` and the infotext of ``record["params"]``."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", infotext(record["params"]))
    info.add_text(RECORD_KEY, json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def png_record(path: Path) -> dict[str, Any] | None:
    """The JSON record a PNG carries (None when it carries none, or cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            text = im.text.get(RECORD_KEY) if hasattr(im, "text") else None  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return None
    try:
        rec = json.loads(text) if text else None
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None
