"""The matrix's character axis (each character alone, each pair with the pair template) and loras axis
(sets of LoRA files applied together): cells, records, exact regeneration, promotion of a joint cell."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lorawb.errors import ConfigError
from lorawb.matrix.cells import LoraRef, Params, Resolved, enumerate_cells
from lorawb.matrix.spec import lora_entry, parse_spec

A = LoraRef("runs/a/mira.safetensors", "mira", 100)
B = LoraRef("runs/b/tom.safetensors", "tom", 100)
J = LoraRef("runs/j/joint.safetensors", "joint", 200)


def resolved(**kw) -> Resolved:
    base = {
        "base": "models/m",
        "trigger": "",
        "width": 32,
        "height": 32,
        "steps": 10,
        "cfg": 1.5,
        "sampler": "ddim",
        "checkpoints": (None,),
        "characters": (("mira", "zkx_mira"), ("tom", "qvr_tom")),
        "pair_template": "{a} on the left and {b} on the right, {context}",
        "pair_width": 64,
        "stacks": (((A, 1.0), (B, 1.0)), ((J, 1.0),)),
    }
    return Resolved(**(base | kw))


SPEC = """
[matrix]
prompt = "{trigger}, {context}"
controls = ["red hair, beach"]

[axes]
loras = [["runs/a/mira.safetensors", "runs/b/tom.safetensors"], ["runs/j/joint.safetensors"]]
character = ["mira", "tom", "mira+tom"]
context = ["forest", "bar"]
seed = [0]
"""


def test_character_and_loras_axes_make_each_character_and_pair_per_set_of_loras() -> None:
    lay = enumerate_cells(parse_spec(SPEC), resolved())
    cells = [c for c in lay.cells.values() if not c.is_control]
    assert len(cells) == 2 * 3 * 2
    prompts = {c.params.prompt for c in cells}
    assert "zkx_mira, forest" in prompts and "qvr_tom, bar" in prompts
    assert "zkx_mira on the left and qvr_tom on the right, forest" in prompts
    pair = next(c for c in cells if c.characters == ("mira", "tom"))
    assert (pair.params.width, pair.params.height) == (64, 32) and pair.plain_prompt == "forest"
    alone = next(c for c in cells if c.characters == ("mira",))
    assert alone.params.width == 32 and alone.triggers == ("zkx_mira",)
    stacked = next(c for c in cells if len(c.params.stack) == 2)
    assert [(r.path, w) for r, w in stacked.params.all_loras()] == [(A.path, 1.0), (B.path, 1.0)]
    assert not stacked.params.is_base and stacked.params.base_twin().is_base
    assert lay.axes["loras"].labels == ["mira + tom", "joint"]
    # the controls: one per set of LoRAs (no character in them)
    assert sum(c.is_control for c in lay.cells.values()) == 2


def test_a_stack_is_part_of_the_id_and_round_trips_its_record() -> None:
    lay = enumerate_cells(parse_spec(SPEC), resolved())
    for c in lay.cells.values():
        assert Params.from_dict(c.params.as_dict()) == c.params
    a = enumerate_cells(parse_spec(SPEC), resolved(stacks=(((A, 1.0), (B, 0.5)), ((J, 1.0),))))
    assert set(a.cells) != set(lay.cells)
    # a cell with no stack keeps the id it always had
    plain = Params("m", None, 0.0, "p", "", 0, 1.5, 10, "ddim", 32, 32)
    assert "loras" not in plain.key() and plain.id == Params(**{**plain.__dict__}).id


def test_a_promoted_joint_cell_names_both_triggers() -> None:
    lay = enumerate_cells(parse_spec(SPEC), resolved())
    pair = next(c for c in lay.cells.values() if c.characters == ("mira", "tom"))
    assert pair.caption("") == "zkx_mira, qvr_tom, forest"


def test_lora_entries_and_what_a_loras_axis_refuses() -> None:
    assert lora_entry("runs/a.safetensors@0.8") == ("runs/a.safetensors", 0.8)
    assert lora_entry("a.safetensors") == ("a.safetensors", 1.0)
    with pytest.raises(ConfigError, match="checkpoint axis"):
        parse_spec(SPEC.replace("seed = [0]", "seed = [0]\ncheckpoint = ['a.safetensors']"))
    with pytest.raises(ConfigError, match="not a weight"):
        parse_spec(SPEC.replace("joint.safetensors", "joint.safetensors@x"))


CHARS = """
[characters]
pair_template = "{a} on the left and {b} on the right, {context}"

[characters.mira]
trigger = "zkx_mira"

[characters.tom]
trigger = "qvr_tom"
"""

DRAW = """
[matrix]
prompt = "{{trigger}}, {{context}}"
steps = 2
cfg = 1.5
pair_width = 64

[axes]
loras = [["{a}", "{b}@0.5"], ["{b}"]]
character = ["mira", "mira+tom"]
context = ["forest"]
seed = [3]
"""


@pytest.fixture(scope="module")
def joint_drawn(tmp_path_factory, trained_project):
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.lorafile import run_checkpoints
    from lorawb.matrix.runner import run_matrix
    from lorawb.train.runfolder import list_runs

    root = tmp_path_factory.mktemp("joint") / "proj"
    shutil.copytree(trained_project, root, symlinks=True)
    with open(root / "lorawb.toml", "a", encoding="utf-8") as fh:
        fh.write(CHARS)
    ck = [c.path.relative_to(root).as_posix() for c in run_checkpoints(list_runs(root / "runs")[-1])]
    folder = root / "matrices" / "joint"
    folder.mkdir(parents=True)
    (folder / "matrix.toml").write_text(DRAW.format(a=ck[0], b=ck[1]), encoding="utf-8")
    assert run_matrix(MatrixFolder(folder)) == "finished"
    return MatrixFolder(folder), ck


def test_cell_records_name_every_lora_and_weight_and_regenerate_exactly(joint_drawn) -> None:
    from lorawb.matrix.folder import read_rows
    from lorawb.matrix.runner import regenerate

    folder, ck = joint_drawn
    rows = read_rows(folder.cells_log, "cell")
    assert len(rows) == 4
    stacked = [r for r in rows.values() if len(r["params"].get("loras", [])) == 2]
    assert len(stacked) == 2
    row = next(r for r in stacked if r.get("characters") == ["mira", "tom"])
    assert [(e["path"], e["weight"]) for e in row["params"]["loras"]] == [(ck[0], 1.0), (ck[1], 0.5)]
    assert row["triggers"] == ["zkx_mira", "qvr_tom"] and row["params"]["width"] == 64
    with Image.open(folder.cell_png(row["id"])) as im:
        stored = np.asarray(im.convert("RGB"), dtype=np.int16)
        infotext = im.text["parameters"]  # A1111's PNG Info lists every LoRA of the set, with its weight
    assert stored.shape == (32, 64, 3)
    assert f"<lora:{Path(ck[0]).stem}:1>" in infotext and f"<lora:{Path(ck[1]).stem}:0.5>" in infotext
    again = np.asarray(regenerate(folder, row["id"]), dtype=np.int16)
    assert np.array_equal(again, stored)
    # the two sets of LoRAs draw differently on the same prompt and seed
    other = next(
        r for r in rows.values() if len(r["params"].get("loras", [])) == 1 and r.get("characters") == ["mira", "tom"]
    )
    with Image.open(folder.cell_png(other["id"])) as im:
        assert not np.array_equal(np.asarray(im.convert("RGB"), dtype=np.int16), stored)


def test_matrix_new_pairs_writes_the_joint_matrix_over_the_contexts_a_pair_lacks(tmp_path, trained_project) -> None:
    from lorawb.core.project import Project
    from lorawb.matrix.cells import enumerate_cells
    from lorawb.matrix.new import NewMatrix, build_spec
    from lorawb.matrix.resolve import resolve
    from lorawb.matrix.spec import parse_spec
    from tests.train.conftest import write_images

    root = tmp_path / "proj"
    shutil.copytree(trained_project, root, symlinks=True)
    with open(root / "lorawb.toml", "a", encoding="utf-8") as fh:
        fh.write(CHARS + '\n[tags.groups]\ncontext = ["forest", "spaceship", "bar", "beach"]\n')
    # two joint images in the forest (write_images cycles the contexts: 0 and 4 are forest)
    joint = root / "dataset" / "3_zkx_mira+qvr_tom"
    write_images(joint, 1, trigger="zkx_mira, qvr_tom", start=0)
    write_images(joint, 1, trigger="zkx_mira, qvr_tom", start=4)
    project = Project.load(root)
    text, _run, notes = build_spec(project, NewMatrix(pairs=True, minutes=0))
    spec = parse_spec(text)
    assert spec.axes["character"] == ["mira+tom"]
    assert spec.axes["context"] == ["spaceship", "bar", "beach"]
    assert any("mira+tom lacks spaceship, bar, beach" in n for n in notes)
    cells = enumerate_cells(spec, resolve(spec, project).resolved).cells.values()
    assert {c.params.prompt for c in cells if not c.is_control} >= {
        "zkx_mira on the left and qvr_tom on the right, bar"
    }
    # without --pairs: every prompt for each character alone and for the pair
    every = parse_spec(build_spec(project, NewMatrix(minutes=0))[0])
    assert every.axes["character"] == ["mira", "tom", "mira+tom"]
    with pytest.raises(Exception, match="two or more characters"):
        build_spec(Project.load(trained_project), NewMatrix(pairs=True))


def test_scores_per_character_are_summed_up_per_set_of_loras_and_character() -> None:
    from lorawb.matrix.bleed import by_character, format_by_character, format_characters

    lay = enumerate_cells(parse_spec(SPEC), resolved())
    scores = {}
    for cid, c in lay.cells.items():
        if c.is_control:
            continue
        joint = len(c.params.stack) == 1
        if len(c.characters) == 1:
            scores[cid] = {"scorer": "r", "identity": 1.0 if joint else 0.5, "bleed": 0.0 if joint else 1.0}
        else:
            scores[cid] = {"scorer": "r", "identity": 1.0, "bleed": 0.0, "two_figures": 1.0 if joint else 0.0}
    rows = {(r.loras, r.character): r for r in by_character(lay, scores, "r")}
    assert rows[("joint", "mira")].identity == 1.0 and rows[("mira + tom", "mira")].bleed == 1.0
    assert rows[("mira + tom", "mira+tom")].two_figures == 0.0 and rows[("joint", "mira+tom")].cells == 2
    text = format_by_character(list(rows.values()))
    assert "mira + tom" in text and "two figs" in text
    line = format_characters(
        {"characters": {"mira": {"identity": 1.0, "at": "left"}}, "bleed": 1.0, "two_figures": 0.0}
    )
    assert line == "mira 1.00 (left) · bleed 1 · one figure"


def test_the_summary_names_a_set_of_loras_by_its_label() -> None:
    from lorawb.matrix.scores import by_axis_value, summarize

    lay = enumerate_cells(parse_spec(SPEC), resolved())
    scores = {cid: {"scorer": "r", "identity": 1.0} for cid, c in lay.cells.items() if not c.is_control}
    summary = summarize(lay, scores, set(lay.cells), "r", ("identity",))
    assert [(r.checkpoint, r.weight) for r in summary.rows] == [("mira + tom", 1.0), ("joint", 1.0)]
    rows = by_axis_value(lay, scores, "r", "context", summary.rows[1])
    assert [(r.value, r.cells) for r in rows] == [("forest", 3), ("bar", 3)]


def test_per_character_identities_are_not_put_against_the_whole_datasets_ceiling() -> None:
    from lorawb.matrix.scores import format_table, scores_header, summarize

    lay = enumerate_cells(parse_spec(SPEC), resolved())
    plain = {cid: {"scorer": "r", "identity": 0.5, "ceiling": 0.8} for cid in lay.cells}
    assert summarize(lay, plain, set(lay.cells), "r", ("identity",)).ceiling == 0.8
    scored = {cid: {**row, "characters": {"mira": {"identity": 0.5}}} for cid, row in plain.items()}
    summary = summarize(lay, scored, set(lay.cells), "r", ("identity",))
    assert summary.ceiling is None and summary.per_character
    assert "each identity is one character's" in scores_header(summary) and "(%)" not in format_table(summary)


def test_promoting_a_joint_cell_writes_both_triggers_in_its_caption(joint_drawn) -> None:
    from lorawb.core.project import Project
    from lorawb.matrix.plan import plan_matrix
    from lorawb.matrix.promote import promote

    folder, _ = joint_drawn
    project = Project.load(folder.path)
    pair = next(c for c in plan_matrix(folder, project).cells if c.characters == ("mira", "tom"))
    promote(project, folder, [pair], project.trigger)
    caption = project.inbox_dir / f"{folder.id}-{pair.id}.txt"
    assert caption.read_text(encoding="utf-8").strip() == "zkx_mira, qvr_tom, forest"


def test_files_of_one_name_from_two_runs_are_told_apart_by_their_folder() -> None:
    from lorawb.matrix.cells import stack_label
    from lorawb.matrix.resolve import _distinct_labels

    a = LoraRef("runs/A/p-000400.safetensors", "p-000400", 400)
    b = LoraRef("runs/B/p-000400.safetensors", "p-000400", 400)
    stacks = _distinct_labels([((a, 1.0),), ((b, 1.0),), ((A, 1.0),)])
    assert [stack_label(s) for s in stacks] == ["A/p-000400", "B/p-000400", "mira"]
    assert [s[0][0].path for s in stacks] == [a.path, b.path, A.path]  # what a cell records is unchanged
