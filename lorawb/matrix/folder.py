"""Reading matrices/<id>/ folders (matrix.toml, cells/*.png, grid.png) without generating anything.

The prompt-matrix tester itself is a later milestone; this is what the Matrix
tab lists today, and the contract that tester will write to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from lorawb.core.fsutil import read_text


@dataclass
class MatrixSummary:
    id: str
    path: Path
    axes: dict[str, list[Any]] = field(default_factory=dict)
    cells: int = 0
    expected_cells: int | None = None
    grid: Path | None = None
    problem: str | None = None

    @property
    def preview(self) -> Path | None:
        if self.grid is not None:
            return self.grid
        cells = sorted((self.path / "cells").glob("*.png"))
        return cells[0] if cells else None


def summarize_matrix(path: Path) -> MatrixSummary:
    s = MatrixSummary(id=path.name, path=path)
    spec = path / "matrix.toml"
    if spec.exists():
        try:
            data = tomlkit.parse(read_text(spec).text).unwrap()
            axes = data.get("axes", {})
            if isinstance(axes, dict):
                s.axes = {k: list(v) if isinstance(v, list) else [v] for k, v in axes.items()}
                n = 1
                for values in s.axes.values():
                    n *= max(1, len(values))
                s.expected_cells = n if s.axes else None
        except Exception as exc:  # a hand-edited file may be anything; report, don't crash
            s.problem = f"matrix.toml: {exc}"
    else:
        s.problem = "no matrix.toml"
    cells = path / "cells"
    s.cells = sum(1 for _ in cells.glob("*.png")) if cells.is_dir() else 0
    grid = path / "grid.png"
    s.grid = grid if grid.exists() else None
    return s


def list_matrices(matrices_dir: Path) -> list[MatrixSummary]:
    if not matrices_dir.is_dir():
        return []
    return [summarize_matrix(p) for p in sorted(matrices_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")]
