"""What a training sample carries, and the contact sheet of each sample step (no torch here).

Each ``samples/<step>-<i>.png`` carries the text a matrix cell carries (lorawb.core.pngtext, the one
writer): A1111's ``parameters`` infotext, and a ``lorawb`` JSON record with every parameter that
drew it (prompt, negative, seed, steps, guidance, sampler, size, the base model) and where it comes
from: the run, the step, and the checkpoint that holds the LoRA as it was at that step (when the
step saves one). ``samples/<step>-sheet.png`` shows the step's samples side by side: one row per
prompt, one column per seed, labelled (lorawb.core.contact_sheet, the matrix's drawer).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from lorawb.core.contact_sheet import SheetCell, render_grid, save_sheet


def sample_record(
    *,
    run_id: str,
    step: int,
    index: int,
    checkpoint: Path | None,
    base: str,
    prompt: str,
    negative: str,
    seed: int,
    cfg: float,
    steps: int,
    sampler: str,
    width: int,
    height: int,
    family: str,
) -> dict[str, Any]:
    """The JSON record of one sample; ``params`` has the matrix cell's shape (Params.as_dict)."""
    import lorawb

    label = f"{run_id} step {step}" + ("" if checkpoint is not None else " (no checkpoint at this step)")
    return {
        "kind": "sample",
        "run": run_id,
        "step": step,
        "index": index,
        "checkpoint": f"checkpoints/{checkpoint.name}" if checkpoint is not None else None,
        "params": {
            "base": base,
            "lora": {"path": str(checkpoint) if checkpoint is not None else None, "label": label, "step": step},
            "weight": 1.0,
            "prompt": prompt,
            "negative": negative,
            "seed": int(seed),
            "cfg": float(cfg),
            "steps": int(steps),
            "sampler": sampler,
            "width": int(width),
            "height": int(height),
        },
        "family": family,
        "versions": {"lorawb": lorawb.__version__},
    }


def sheet_path(run_path: Path, step: int) -> Path:
    return run_path / "samples" / f"{step:06d}-sheet.png"


def write_sample_sheet(
    run_path: Path, run_id: str, step: int, records: list[dict[str, Any]], paths: list[Path], base: str
) -> Path:
    """The step's samples as one labelled sheet: a row per prompt, a column per seed."""
    prompts = list(dict.fromkeys(r["params"]["prompt"] for r in records))
    seeds = list(dict.fromkeys(r["params"]["seed"] for r in records))
    cells = {
        (prompts.index(r["params"]["prompt"]), seeds.index(r["params"]["seed"])): SheetCell(path)
        for r, path in zip(records, paths, strict=True)
    }
    first = records[0]["params"]
    checkpoint = records[0]["checkpoint"] or "no checkpoint at this step"
    sheet = render_grid(
        cells,
        image_size=(first["width"], first["height"]),
        col_labels=[f"seed {s}" for s in seeds],
        row_lines=[textwrap.wrap(p, 40, max_lines=3, placeholder=" …") or ["(empty prompt)"] for p in prompts],
        title=[
            f"{run_id} · samples at step {step}",
            f"{Path(base).name} · {checkpoint} · {first['sampler']}, {first['steps']} steps, guidance {first['cfg']:g}, "
            f"{first['width']}x{first['height']}" + (f" · negative: {first['negative']}" if first["negative"] else ""),
        ],
    )
    return save_sheet(sheet, sheet_path(run_path, step))
