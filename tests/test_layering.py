"""The arrows go one way: core/train/matrix never import the UI; core never imports torch."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "lorawb"
UI = ("textual", "rich", "textual_image", "textual_plotext", "lorawb.tui", "lorawb.cli")
HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offenders(folder: str, banned: tuple[str, ...]) -> list[str]:
    bad = []
    for py in sorted((PKG / folder).rglob("*.py")):
        for mod in imported_modules(py):
            if any(mod == b or mod.startswith(b + ".") for b in banned):
                bad.append(f"{py.relative_to(PKG.parent)} imports {mod}")
    return bad


def test_core_train_matrix_do_not_import_ui():
    for folder in ("core", "train", "matrix", "toyworld", "tagger", "queue", "sweep", "generate"):
        assert offenders(folder, UI) == []


def test_core_does_not_import_torch():
    assert offenders("core", HEAVY) == []


def test_the_queue_does_not_import_torch():
    # The runner and `lorawb queue` start in a blink; the workers they start import torch.
    assert offenders("queue", HEAVY) == []


def test_checker_catches_a_bad_import(tmp_path, monkeypatch):
    # The check must be able to fail: plant a module that imports textual.
    bad = tmp_path / "lorawb" / "core"
    bad.mkdir(parents=True)
    (bad / "oops.py").write_text("import textual.app\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", tmp_path / "lorawb")
    assert offenders("core", UI) == ["lorawb/core/oops.py imports textual.app"]
