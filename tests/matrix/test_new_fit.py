"""`lorawb matrix new` through a subprocess, as a user runs it: its arithmetic adds up, and the
matrix is fitted to `[matrix] target_minutes` at the measured speed, saying what it left out."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

GROUPS = '\n[tags.groups]\ncontext = ["forest", "bar"]\nstyle = ["watercolor", "flat"]\n'


def lorawb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lorawb", *args], capture_output=True, text=True, timeout=120)


def at_one_second_an_image(root: Path) -> None:
    """The drawn matrix `small` says each of its images took 1 s: the estimate becomes exact arithmetic."""
    log = root / "matrices" / "small" / "cells.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    for row in rows:
        if row.get("type") == "cell":
            row["seconds_per_image"] = 1.0
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))


def breakdown(line: str) -> tuple[int, int, int, int]:
    """(images, the breakdown's product, grid positions, repeats) of `  N images: A × B × (C + D) = P grid positions, less R ...`."""
    m = re.match(r"\s*(\d+) images?: (.*?) = (\d+) grid positions?(?:, less (\d+) repeats?)?", line)
    assert m, line
    expr = re.sub(r"[^\d×+()]", "", m.group(2)).replace("×", "*")
    return int(m.group(1)), eval(expr), int(m.group(3)), int(m.group(4) or 0)  # noqa: S307 - digits and * + ( )


def seconds(text: str) -> int:
    m = re.search(r"estimated (?:(\d+)m)?(\d+)s", text)
    assert m, text
    return int(m.group(1) or 0) * 60 + int(m.group(2))


def test_the_breakdown_adds_up_to_the_count(lora_project):
    (lora_project / "lorawb.toml").write_text((lora_project / "lorawb.toml").read_text() + GROUPS)
    out = lorawb("matrix", "new", str(lora_project), "full", "--minutes", "0")
    assert out.returncode == 0, out.stderr
    images, product, positions, repeats = breakdown(out.stdout.splitlines()[1])
    assert product == positions and positions - repeats == images
    # 2 checkpoints × 4 weights × 2 seeds × (2 contexts × 2 styles + 2 control prompts), weight 0 once
    assert (positions, images) == (96, 84)
    shown = json.loads(lorawb("matrix", "show", str(lora_project), "full", "--json").stdout)
    assert shown["cells"] == images


def test_new_fits_the_target_time_and_says_what_it_left_out(lora_project):
    toml = lora_project / "lorawb.toml"
    toml.write_text(toml.read_text() + GROUPS + "\n[matrix]\ntarget_minutes = 0.5\n")
    at_one_second_an_image(lora_project)
    full = lorawb("matrix", "new", str(lora_project), "full", "--minutes", "0")
    assert seconds(full.stdout) == 84  # 84 images at 1 s: more than the 30 s asked for
    fit = lorawb("matrix", "new", str(lora_project), "fit")
    assert fit.returncode == 0, fit.stderr
    images, product, positions, repeats = breakdown(fit.stdout.splitlines()[1])
    assert product == positions and positions - repeats == images
    assert seconds(fit.stdout) <= 30 and images == seconds(fit.stdout)
    note = next(line for line in fit.stdout.splitlines() if "note: fitted" in line)
    assert "target_minutes" in note and "1 of 2 seeds" in note and "2 of 4 prompts" in note
    assert "The full matrix is 84 images" in note and "--minutes 0" in note
    spec = (lora_project / "matrices" / "fit" / "matrix.toml").read_text()
    assert "seed = [0]" in spec and 'zip = [["context", "style"]]' in spec
    # What the user gives is kept as given, and the rest still fits.
    kept = lorawb("matrix", "new", str(lora_project), "kept", "--seeds", "0,1")
    assert kept.returncode == 0, kept.stderr
    assert "seed = [0, 1]" in (lora_project / "matrices" / "kept" / "matrix.toml").read_text()
    assert seconds(kept.stdout) <= 30


def test_fill_gaps_pairs_a_value_that_two_gaps_share(lora_project):
    """Two gaps with the same style made a zipped axis repeat a value, which the spec refused."""
    toml = lora_project / "lorawb.toml"
    toml.write_text(toml.read_text() + '\n[tags.groups]\ncontext = ["forest", "bar"]\nstyle = ["sketch"]\n')
    out = lorawb("matrix", "new", str(lora_project), "gaps", "--fill-gaps", "--minutes", "0")
    assert out.returncode == 0, out.stderr
    spec = (lora_project / "matrices" / "gaps" / "matrix.toml").read_text()
    assert 'style = ["sketch", "sketch"]' in spec


def test_list_names_each_matrixs_run(lora_project):
    out = lorawb("matrix", "list", str(lora_project))
    assert out.returncode == 0, out.stderr
    head, row = out.stdout.splitlines()[:2]
    run = next((lora_project / "runs").iterdir()).name
    assert head.split()[:3] == ["MATRIX", "RUN", "STATE"] and row.split()[:2] == ["small", run]


def second_run(root: Path) -> tuple[str, str]:
    """The project's run copied under another id (a 'v2'), and matrix `small2`: `small`'s spec over it."""
    import shutil

    first = next((root / "runs").iterdir())
    second = root / "runs" / (first.name.rsplit("-", 1)[0] + "-v2")
    shutil.copytree(first, second)
    spec = (root / "matrices" / "small" / "matrix.toml").read_text().replace(first.name, second.name)
    (root / "matrices" / "small2").mkdir()
    (root / "matrices" / "small2" / "matrix.toml").write_text(spec)
    return first.name, second.name


def test_compare_puts_two_runs_matrices_side_by_side(lora_project):
    first, second = second_run(lora_project)
    out = lorawb("matrix", "compare", str(lora_project), "small2")  # B: the same spec over the other run
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"A small2 (run {second})  vs  B small (run {first})"
    rows = [line.split()[:3] for line in lines if line.startswith(("base", "step"))]
    assert rows == [["base", "0", "-"], ["step", "1", "1"], ["step", "2", "1"]]
    assert "recommendation A:" in out.stdout and "recommendation B:" in out.stdout
    spec = lora_project / "matrices" / "small2" / "matrix.toml"
    spec.write_text(spec.read_text().replace("seed = [0, 1]", "seed = [0]"))
    out = lorawb("matrix", "compare", str(lora_project), "small2")
    assert out.returncode == 2 and "no other matrix with the same spec as small2" in out.stderr
    out = lorawb("matrix", "compare", str(lora_project), "small2", "small")  # named: compared, differences said
    assert out.returncode == 0 and "the specs differ beside the run: axes.seed: [0] vs [0, 1]" in out.stdout
