"""The family package is the only place that knows a model family: the training loop, the matrix and
the app never name one (a new family is one module in lorawb/families, not edits through the loop)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from lorawb import families

PKG = Path(__file__).resolve().parents[1] / "lorawb"
GUARDED = ["train/trainer.py", "train/batches.py", "train/caches.py", "matrix", "generate", "tui"]


def family_mentions(path: Path) -> list[str]:
    """String constants that are a family's name, and identifiers that are a family module's classes."""
    names = set(families.names())
    classes = {type(f).__name__ for f in families.REGISTRY.values()}
    classes |= {type(f).__name__.replace("Family", "Model") for f in families.REGISTRY.values()}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in names:
            found.append(f"{path.relative_to(PKG.parent)}:{node.lineno} names {node.value!r}")
        elif isinstance(node, ast.Name) and node.id in classes:
            found.append(f"{path.relative_to(PKG.parent)}:{node.lineno} uses {node.id}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lorawb.families."):
            found.append(f"{path.relative_to(PKG.parent)}:{node.lineno} imports {node.module}")
    return found


def offenders(root: Path = PKG) -> list[str]:
    out = []
    for rel in GUARDED:
        target = root / rel
        for py in sorted(target.rglob("*.py") if target.is_dir() else [target]):
            out += family_mentions(py)
    return out


def test_the_loop_the_matrix_and_the_app_never_name_a_family():
    assert offenders() == []


def test_the_guard_can_fail(tmp_path, monkeypatch):
    bad = tmp_path / "lorawb" / "matrix"
    bad.mkdir(parents=True)
    (bad / "oops.py").write_text('cfg = 5.0 if family == "sdxl" else 7.0\nfrom lorawb.families.flux import FluxModel\n')
    (tmp_path / "lorawb" / "train").mkdir()
    for name in ("trainer.py", "batches.py", "caches.py"):
        (tmp_path / "lorawb" / "train" / name).write_text("x = 1\n")
    (tmp_path / "lorawb" / "tui").mkdir()
    (tmp_path / "lorawb" / "generate").mkdir()
    monkeypatch.setattr(sys.modules[__name__], "PKG", tmp_path / "lorawb")
    assert sorted(offenders(tmp_path / "lorawb")) == [
        "lorawb/matrix/oops.py:1 names 'sdxl'",
        "lorawb/matrix/oops.py:2 imports lorawb.families.flux",
    ]
