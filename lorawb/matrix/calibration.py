"""How far an embedder's scores follow the truth: rank correlations with the toy world's reader.

``scripts/calibrate_scores.py`` draws the sample project's matrix, scores it with the toy reader
(the truth: it reads the attributes the toy world drew) and with an embedder, and writes the
Spearman rank correlation per score into the embedder's folder as ``lorawb_calibration.json``.
The matrix summary reads it (``read_calibration``) and shows a caveat beside a score whose
correlation is weak (below ``lorawb.matrix.scores.WEAK_CORRELATION``). No torch here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lorawb.core.fsutil import atomic_write_text

FILE = "lorawb_calibration.json"
# score -> the cells it is measured on (identity on trigger prompts; leak and PRES on controls)
CALIBRATED = ("identity", "leak", "prompt_following", "prior")


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties averaged); None with fewer than three pairs or a constant side."""
    if len(a) != len(b) or len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    from scipy.stats import spearmanr

    res = spearmanr(list(a), list(b))
    rho = float(getattr(res, "statistic", res[0]))
    return None if math.isnan(rho) else rho


def correlate(truth: dict[str, dict[str, Any]], measured: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per score: (rho, n) over the cells both scored (``truth`` and ``measured``: cell id -> score row)."""
    out: dict[str, dict[str, Any]] = {}
    for metric in CALIBRATED:
        pairs = [
            (float(t[metric]), float(measured[cid][metric]))
            for cid, t in truth.items()
            if isinstance(t.get(metric), (int, float)) and isinstance(measured.get(cid, {}).get(metric), (int, float))
        ]
        rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
        out[metric] = {"rho": None if rho is None else round(rho, 3), "n": len(pairs)}
    return out


def write_calibration(folder: Path, table: dict[str, dict[str, Any]], **about: Any) -> Path:
    path = Path(folder) / FILE
    atomic_write_text(path, json.dumps({**about, "scores": table}, indent=2) + "\n")
    return path


def read_calibration(folder: str | Path | None) -> dict[str, float]:
    """metric -> rho from an embedder folder's calibration (empty when it has none)."""
    if not folder:
        return {}
    try:
        data = json.loads((Path(folder) / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out = {}
    for metric, v in (data.get("scores") or {}).items():
        if isinstance(v, dict) and isinstance(v.get("rho"), (int, float)):
            out[metric] = float(v["rho"])
    return out
