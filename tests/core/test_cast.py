"""Several characters in the dataset views: a two-character project from kohya folders (tests/core/two_characters.py).

Counts per character (alone) and pair (together), the doctor's warnings, the composition per pair, the
filters of Triage and of caption operations, and the caption operations per character.
"""

from __future__ import annotations

import json

import pytest

from lorawb.cli import main
from lorawb.core import caption_ops as co
from lorawb.core import triage as tri
from lorawb.core.caption_stats import tag_stats
from lorawb.core.caption_writes import CaptionWrites, keep_trigger_in_step
from lorawb.core.cast import THIN_CHARACTER, THIN_PAIR
from lorawb.core.characters import characters_of
from lorawb.core.composition import composition
from lorawb.core.doctor import diagnose, render_text
from lorawb.core.project import Project, init_project
from lorawb.core.triage import TriageError
from lorawb.errors import CaptionError, LorawbError
from tests.core.two_characters import build, write_folders


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Project:
    """Read-only: tests that write captions build their own."""
    return build(tmp_path_factory.mktemp("cast") / "two")


def test_counts_per_character_and_pair_with_their_cells(two):
    r = diagnose(two)
    rows = {c.label: (c.images, c.values.get("context", {}), c.cells) for c in r.characters}
    assert rows["mira"][0] == 10 and rows["tom"][0] == 4 and rows["mira+tom"][0] == 4  # 3 by folder, 1 by caption
    assert rows["tom"][1] == {"forest": 4, "bar": 0, "beach": 0}
    assert (rows["mira"][2], rows["tom"][2], rows["mira+tom"][2], r.cells_total) == (6, 2, 4, 6)
    assert r.no_character == ["other/o00.png"]
    assert r.trigger == ""  # several characters: no one project trigger is counted


def test_doctor_warns_of_thin_characters_and_pairs_and_of_wrong_captions(two):
    r = diagnose(two)
    assert r.character_warnings == [
        f"tom: 4 images alone, under {THIN_CHARACTER}: thin (draw or promote more)",
        "tom: every image with a context is 'forest' (all in one context)",
        f"the pair mira+tom: 4 images together, under {THIN_PAIR}: thin (draw or promote more)",
    ]
    checks = dict(r.caption_checks)
    assert checks == {
        "10_qvr_tom/t03.png": "holds tom (its folder) but the caption lacks 'qvr_tom'",
        "10_zkx_mira/m09.png": "carries tom's red cap without 'qvr_tom' (an image of mira: tom's look would bleed "
        "into it)",
        "5_zkx_mira+qvr_tom/j02.png": "the triggers do not lead: start with 'zkx_mira, qvr_tom'",
    }
    # Each is a problem: 3 warnings, 3 captions, 1 image of no character.
    assert r.problem_count == 3 + 3 + 1
    text = render_text(r)
    assert "    mira+tom       4 images  context 3/3  style 2/2  cells 4/6" in text
    assert "10_zkx_mira/m09.png: carries tom's red cap" in text
    assert "trigger: not set" not in text


def test_an_invariant_most_captions_spell_out_is_missing_where_they_do_not(tmp_path):
    p = build(tmp_path / "p")
    d = p.dataset_dir / "10_zkx_mira"
    for i in range(9):  # nine of mira's ten captions spell out her hair
        f = d / f"m{i:02d}.txt"
        f.write_text(f.read_text(encoding="utf-8") + ", short blue hair", encoding="utf-8")
    f = p.dataset_dir / "5_zkx_mira+qvr_tom" / "j00.txt"
    f.write_text(f.read_text(encoding="utf-8") + ", short blue hair", encoding="utf-8")
    checks = diagnose(p).caption_checks
    notes = [n for rel, n in checks if rel == "10_zkx_mira/m09.png"]
    assert notes[0] == "names 'zkx_mira' without short blue hair (most of mira's captions spell it out)"
    # A joint image holding mira may carry her invariant tags: no bleed warning.
    assert [n for rel, n in checks if rel.startswith("5_") and "bleed" in n] == []


def test_doctor_json_lists_the_characters(two, capsys):
    assert main(["doctor", str(two.root), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [c["label"] for c in data["characters"]] == ["mira", "tom", "mira+tom"]
    assert {"path": "10_qvr_tom/t03.png", "note": "holds tom (its folder) but the caption lacks 'qvr_tom'"} in data[
        "caption_checks"
    ]


def test_a_one_character_project_has_no_cast_and_the_views_are_as_before(tmp_path):
    p = init_project(tmp_path / "one", trigger="zkx_mira")
    write_folders(p.dataset_dir)
    r = diagnose(p)
    assert r.characters == [] and r.caption_checks == [] and r.character_warnings == []
    assert r.trigger == "zkx_mira" and "10_qvr_tom/t00.png" in r.without_trigger
    assert "characters" not in r.to_dict()
    files = co.load_captions(p)
    st = tag_stats(files, p.trigger, characters_of(p.config))
    assert st.groups == [] and st.tags[0].by_group == ()
    comp = composition(files, {"context": ["forest", "bar"], "style": ["photo"]}, chars=characters_of(p.config))
    assert list(comp.groups) == ["context", "style"] and comp.cells == {}
    with pytest.raises(TriageError, match="one character"):
        tri.character_filter("mira", characters_of(p.config))
    for where in ("joint", "char:one", "char:none"):  # no filter word of several characters passes silently
        with pytest.raises(LorawbError, match="one character"):
            co.parse_where(where, characters_of(p.config))


def test_composition_has_a_character_group_with_the_pair_as_a_row(two):
    comp = composition(co.load_captions(two), two.config.tags.groups, chars=characters_of(two.config))
    assert list(comp.groups) == ["character", "context", "style"]
    table = comp.pairs[0]
    assert (table.rows, table.cols, table.row_values) == ("character", "context", ["mira", "tom", "mira+tom"])
    assert [table.counts[("mira+tom", c)] for c in ("forest", "bar", "beach")] == [1, 2, 1]
    assert ("tom", "bar") in table.empty and ("tom", "beach") in table.empty
    assert comp.cells["tom"] == [("forest", "watercolor"), ("forest", "photo")]
    assert comp.missing["character"] == ["dataset/other/o00.png"]


def test_tag_counts_per_character_and_pair(two):
    st = tag_stats(co.load_captions(two), two.trigger, characters_of(two.config))
    assert st.groups == ["mira", "tom", "mira+tom"]
    forest = next(t for t in st.tags if t.name == "forest")
    assert (forest.count, forest.by_group) == (10, (4, 4, 1))  # and other/o00.png, of no character
    assert st.missing_trigger == [
        "dataset/10_qvr_tom/t03.png",
        "dataset/5_zkx_mira+qvr_tom/j02.png",
        "dataset/other/o00.png",
    ]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("mira", 14),  # alone and together
        ("Tom", 8),
        ("mira+tom", 4),
        ("joint", 4),
        ("none", 1),
    ],
)
def test_triage_filter_by_character(two, word, expected):
    chars = characters_of(two.config)
    flt = tri.Filter(character=tri.character_filter(word, chars))
    shown = tri.list_items(two, flt)
    assert len(shown) == expected
    assert flt.describe().endswith("joint" if word == "joint" else f"character:{word.lower()}")


def test_triage_cli_filters_and_counts(two, capsys):
    assert main(["triage", str(two.root), "--joint"]) == 0
    assert capsys.readouterr().out.split() == [
        "dataset/5_zkx_mira+qvr_tom/j00.png",
        "dataset/5_zkx_mira+qvr_tom/j01.png",
        "dataset/5_zkx_mira+qvr_tom/j02.png",
        "dataset/misc/x00.png",
    ]
    assert main(["triage", str(two.root), "--character", "tom", "--has-tag", "sitting"]) == 0
    assert capsys.readouterr().out.split() == ["dataset/10_qvr_tom/t02.png"]
    assert main(["triage", str(two.root)]) == 0
    assert "characters: mira 10 · tom 4 · mira+tom 4 (alone; pairs together) · 4 joint" in capsys.readouterr().out
    assert main(["triage", str(two.root), "--character", "bob"]) == 2
    assert "unknown character 'bob': use one of mira, tom, mira+tom, joint, none" in capsys.readouterr().err


def test_caption_filters_name_characters(two):
    chars = characters_of(two.config)
    files = co.load_captions(two)
    assert len(co.parse_where("char:tom", chars).filter(files)) == 8
    assert len(co.parse_where("joint has:bar", chars).filter(files)) == 2
    assert len(co.parse_where("-joint char:mira", chars).filter(files)) == 10
    assert co.parse_where("-joint char:mira", chars).describe() == "-joint char:mira"
    with pytest.raises(CaptionError, match="unknown character 'bob'"):
        co.parse_where("char:bob", chars)


# --- caption operations per character ------------------------------------------------------------


def _text(p: Project, rel: str) -> str:
    return (p.dataset_dir / rel).read_text(encoding="utf-8")


def _apply(p: Project, op: co.Operation, where: str | None = None) -> list[str]:
    chars = characters_of(p.config)
    cs = co.build_changeset(p, op, co.parse_where(where, chars) if where else None)
    written = CaptionWrites(p).apply(cs).written
    keep_trigger_in_step(p, op, written)
    return written


def test_triggers_lead_each_caption_in_the_projects_order(tmp_path):
    p = build(tmp_path / "p")
    chars = characters_of(p.config)
    written = _apply(p, co.make_operation("triggers", chars=chars))
    assert sorted(written) == ["dataset/10_qvr_tom/t03.txt", "dataset/5_zkx_mira+qvr_tom/j02.txt"]
    assert _text(p, "10_qvr_tom/t03.txt") == "qvr_tom, forest, photo"
    assert _text(p, "5_zkx_mira+qvr_tom/j02.txt") == "zkx_mira, qvr_tom, beach, photo"
    assert _text(p, "other/o00.txt") == "landscape, forest, photo"  # no character: left alone
    assert not [n for _, n in diagnose(p).caption_checks if "lead" in n or "lacks" in n]


def test_bulk_edits_act_per_character_and_keep_both_triggers_first(tmp_path):
    p = build(tmp_path / "p")
    chars = characters_of(p.config)
    _apply(p, co.make_operation("add", "smile", position="after-trigger", chars=chars), where="char:tom")
    assert _text(p, "10_qvr_tom/t00.txt") == "qvr_tom, smile, forest, watercolor"
    assert _text(p, "5_zkx_mira+qvr_tom/j00.txt") == "zkx_mira, qvr_tom, smile, bar, photo"
    assert "smile" not in _text(p, "10_zkx_mira/m00.txt")
    _apply(p, co.make_operation("sort", chars=chars), where="joint")
    assert _text(p, "5_zkx_mira+qvr_tom/j01.txt") == "zkx_mira, qvr_tom, forest, smile, watercolor"
    assert _text(p, "misc/x00.txt") == "zkx_mira, qvr_tom, bar, smile, watercolor"
    _apply(p, co.make_operation("move", "photo", position="front", chars=chars), where="joint")
    assert _text(p, "5_zkx_mira+qvr_tom/j00.txt") == "zkx_mira, qvr_tom, photo, bar, smile"
    _apply(p, co.make_operation("trigger", "zkx_mira", chars=chars), where="in:10_qvr_tom")
    assert _text(p, "10_qvr_tom/t00.txt") == "zkx_mira, qvr_tom, smile, forest, watercolor"  # the stable order
    assert Project.load(p.root).trigger == ""  # several characters: [project] trigger is not set by `trigger`


def test_rename_trigger_keeps_the_character_table_and_its_folders(tmp_path, capsys):
    p = build(tmp_path / "p")
    code = main(["captions", str(p.root), "rename-trigger", "qvr_tom", "vxq_tom"])
    out = capsys.readouterr().out
    assert code == 0
    assert "characters.tom.trigger = 'vxq_tom' (was 'qvr_tom')" in out
    p = Project.load(p.root)
    tom = characters_of(p.config)[1]
    assert (tom.trigger, tom.folders) == ("vxq_tom", ("10_qvr_tom", "5_zkx_mira+qvr_tom"))
    assert _text(p, "5_zkx_mira+qvr_tom/j00.txt") == "zkx_mira, vxq_tom, bar, photo"
    # The folders still give tom his images: the same counts as before the rename.
    rows = {c.label: c.images for c in diagnose(p).characters}
    assert rows == {"mira": 10, "tom": 4, "mira+tom": 4}
    assert (
        "qvr"
        not in (p.root / "lorawb.toml").read_text(encoding="utf-8").split("[characters.tom]")[1].split("folders")[0]
    )


def test_captions_cli_stats_and_composition_per_character(two, capsys):
    assert main(["captions", str(two.root), "stats", "--json"]) == 0
    forest = next(t for t in json.loads(capsys.readouterr().out)["tags"] if t["name"] == "forest")
    assert forest["by_character"] == {"mira": 4, "tom": 4, "mira+tom": 1}
    assert main(["captions", str(two.root), "composition", "--where", "char:tom"]) == 0
    out = capsys.readouterr().out
    assert "  tom: 2 — forest x watercolor, forest x photo" in out
    assert "character \\ context" in out


def test_sentences_name_characters_and_three_in_one_image_count_for_each_pair():
    from lorawb.core.cast import Cast, held
    from lorawb.core.characters import Character

    chars = [Character("mira", "zkx_mira"), Character("tom", "qvr_tom"), Character("ann", "pqz_ann")]
    prose = held("a.png", "misc", "zkx mira stands beside qvr tom in a forest", chars)
    assert prose.names == ("mira", "tom") and prose.joint
    three = held("b.png", "5_zkx_mira+qvr_tom", "zkx_mira, qvr_tom, pqz_ann, bar", chars)
    cast = Cast.of([prose, three, held("c.png", "10_pqz_ann", "pqz_ann, bar", chars)], chars, checks=False)
    assert cast.summary() == "mira 0 · tom 0 · ann 1 · mira+tom 2 · mira+ann 1 · tom+ann 1"
    assert cast.joint == 2 and cast.warnings == [] and cast.findings == []
