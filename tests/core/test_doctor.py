"""`lorawb doctor`: the report on the problem dataset, its JSON shape, text and exit codes."""

from __future__ import annotations

import json

import pytest

from lorawb.cli import main
from lorawb.core.doctor import render_text, split_tags, trigger_position
from lorawb.train.doctor import doctor
from tests.core.problem_files import TRIGGER


def test_report_on_problem_dataset(problem_project):
    r = doctor(problem_project)
    assert r.images == 15
    assert [(f.folder, f.repeats, f.images, f.steps) for f in r.folders] == [
        ("", 1, 2, 2),
        ("10_mira", 10, 11, 110),
        ("10_mira/sub", 10, 1, 10),
        ("5_other", 5, 1, 5),
    ]
    assert r.steps_per_epoch == 127
    assert [rel for rel, _ in r.unreadable] == [
        "dangling.png",
        "10_mira/corrupt.png",
        "10_mira/empty.jpg",
        "10_mira/truncated.jpg",
        "10_mira/truncated.png",
        "10_mira/sub/selfloop.png",
        "5_other/bad\\xff.png",
        "5_other/bomb.png",
    ]
    assert r.captions_missing == ["10_mira/anim.gif"]
    assert r.captions_empty == ["10_mira/small.webp"]
    assert r.orphan_captions == ["stray.txt", "10_mira/orphan.txt"]
    assert r.non_utf8_captions == [("10_mira/cmyk.txt", "utf-16"), ("10_mira/palette.txt", "cp1252")]
    assert r.bom_captions == ["10_mira/rgba.txt"]
    assert r.low_resolution == [("10_mira/anim.gif", 320, 240), ("10_mira/small.webp", 128, 96)]
    assert r.duplicates == [["10_mira/dup.png", "top.png"]]
    assert (r.captions_counted, r.trigger_first, r.trigger_anywhere) == (13, 12, 13)
    assert r.trigger_not_first == ["10_mira/rotated.jpg"]
    assert r.without_trigger == []
    assert r.buckets == [
        ("384x640 (3:5)", 1),
        ("512x512 (1:1)", 7),
        ("576x448 (9:7)", 5),
        ("640x384 (5:3)", 1),
        ("704x320 (11:5)", 1),
    ]
    assert (r.tags_distinct, r.tags_total) == (11, 15)
    assert r.top_tags[:4] == [("bar", 2), ("beach", 2), ("forest", 2), ("spaceship", 2)]
    assert r.notes == [
        ("both.png", "caption: both .txt and .caption exist; the .txt is used"),
        ("10_mira/wrong_ext.jpg", "file is PNG but named .jpg"),
    ]
    assert r.problem_count == 8 + 1 + 1 + 2 + 2 + 2 + 1 + 1


def test_clean_dataset_has_no_problems(small_project):
    r = doctor(small_project)
    assert r.problem_count == 0
    assert (r.images, r.trigger_first, r.captions_counted) == (5, 5, 5)
    text = render_text(r)
    assert text.endswith("no problems found\n")
    assert 'trigger "zkx_mira": first in 5/5 captions, present in 5/5' in text


def test_min_resolution_comes_from_the_project(small_project):
    small_project.save_setting("project.min_resolution", 600)
    r = doctor(small_project)
    # sizes are 512+64*i wide and 512 high: all have a short side of 512
    assert [rel for rel, _, _ in r.low_resolution] == [f"10_zkx_mira/img_{i}.png" for i in range(5)]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (f"{TRIGGER}, red scarf", "first"),
        (f"  {TRIGGER} ,forest", "first"),
        (f"{TRIGGER} walking in a forest", "first"),
        (f"{TRIGGER}", "first"),
        (f"forest, {TRIGGER}", "elsewhere"),
        (f"a photo of {TRIGGER}.", "elsewhere"),
        (f"{TRIGGER}2, forest", "absent"),
        (f"x{TRIGGER}, forest", "absent"),
        ("forest", "absent"),
        ("", "absent"),
    ],
)
def test_trigger_position(text, where):
    assert trigger_position(text, TRIGGER) == where


def test_split_tags():
    assert split_tags(" a, b ,, c\nd ") == ["a", "b", "c", "d"]
    assert split_tags("   ") == []


def test_doctor_cli_text(problem_project, capsys):
    assert main(["doctor", str(problem_project.root)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("lorawb doctor: proj\n")
    assert "unreadable images (8):" in out
    assert "images: 23 (8 unreadable, not trained) in 4 folders" in out  # one count, as the app shows it
    assert "    10_mira/truncated.png: truncated: image file is truncated" in out
    assert "    10_mira/dup.png = top.png" in out
    assert "    10_mira        10 repeats      11 images      110 steps" in out
    assert out.endswith("18 problems found\n")


def test_doctor_cli_limits_long_lists(small_project, capsys):
    d = small_project.dataset_dir / "10_zkx_mira"
    for i in range(12):
        (d / f"orphan_{i:02d}.txt").write_text("x", encoding="utf-8")
    assert main(["doctor", str(small_project.root)]) == 1  # orphan captions are problems
    out = capsys.readouterr().out
    assert "orphan_09.txt" in out and "orphan_10.txt" not in out
    assert "    ... and 2 more (--all or --json lists them)" in out
    assert main(["doctor", str(small_project.root), "--all"]) == 1
    assert "orphan_11.txt" in capsys.readouterr().out


def test_doctor_cli_json(problem_project, capsys):
    assert main(["doctor", str(problem_project.root), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["images"] == 15
    assert data["problem_count"] == 18
    assert data["steps_per_epoch"] == 127
    assert data["folders"][1] == {"folder": "10_mira", "repeats": 10, "images": 11, "steps": 110}
    assert data["unreadable"][2] == {"path": "10_mira/empty.jpg", "reason": "empty file (0 bytes)"}
    assert data["non_utf8_captions"][0] == {"path": "10_mira/cmyk.txt", "encoding": "utf-16"}
    assert data["low_resolution"][1] == {"path": "10_mira/small.webp", "width": 128, "height": 96}
    assert data["buckets"][1] == {"bucket": "512x512 (1:1)", "images": 7}
    assert data["duplicates"] == [["10_mira/dup.png", "top.png"]]
    assert data["top_tags"][0] == {"tag": "bar", "count": 2}
    assert set(data) == {
        "project", "dataset_dir", "trigger", "resolution", "min_resolution", "images", "image_files", "folders",
        "unreadable", "links_not_followed", "captions_too_large", "captions_missing", "captions_empty",
        "orphan_captions", "non_utf8_captions",
        "bom_captions", "low_resolution", "duplicates", "captions_counted", "trigger_first",
        "trigger_anywhere", "without_trigger", "trigger_not_first", "buckets", "tags_distinct",
        "tags_total", "top_tags", "notes", "config_errors", "training_warnings", "steps_per_epoch",
        "problem_count", "reg",
    }  # fmt: skip


def test_doctor_cli_second_run_uses_the_index(problem_project, capsys):
    assert main(["doctor", str(problem_project.root)]) == 1
    first = capsys.readouterr().out
    assert (problem_project.root / ".lorawb" / "state.sqlite").exists()
    assert main(["doctor", str(problem_project.root)]) == 1
    assert capsys.readouterr().out == first


def test_doctor_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["doctor", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"lorawb: {tmp_path / 'missing'}: no such folder"

    assert main(["doctor", str(tmp_path)]) == 2
    assert "not a lorawb project (no lorawb.toml here or above)" in capsys.readouterr().err.splitlines()[0]

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "lorawb.toml").write_text("[project]\nresolution = 'big'\n", encoding="utf-8")
    assert main(["doctor", str(bad)]) == 2
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith(f"lorawb: {bad / 'lorawb.toml'}:2: project.resolution:")


def test_doctor_without_dataset_folder(small_project, capsys):
    import shutil

    shutil.rmtree(small_project.dataset_dir)
    assert main(["doctor", str(small_project.root)]) == 2
    assert "the dataset folder does not exist" in capsys.readouterr().err


def test_doctor_on_read_only_state(small_project, monkeypatch, capsys):
    # A .lorawb/ that cannot be written must not stop the report: it falls back to a plain scan.
    import sqlite3

    from lorawb.core import state

    def refuse(state_dir):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(state, "connect", refuse)
    assert main(["doctor", str(small_project.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 5


def test_progress_line_is_drawn_and_erased(capsys):
    from lorawb.cli.project_cmds import _progress_line

    show = _progress_line()
    show(0, 10)
    show(5, 10)  # within 0.1 s of the last one: skipped
    show(10, 10)
    assert capsys.readouterr().err == "\rscanning 0/10 images\r\x1b[K"


def test_doctor_reports_a_bad_training_key_as_the_cli_does(tmp_path, capsys):
    from lorawb.cli import main
    from lorawb.core.project import init_project

    project = init_project(tmp_path / "p", trigger="zkx")
    text = project.config_path.read_text().replace("batch_size = 1\n", 'batch_size = "four"\n')
    project.config_path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "four" in t)
    assert main(["train", str(project.root)]) == 2
    cli = capsys.readouterr().err.strip().removeprefix("lorawb: ")
    assert main(["doctor", str(project.root)]) == 1
    out = capsys.readouterr().out
    assert f"{project.config_path}:{line}: train.batch_size:" in out
    assert cli.splitlines()[0] in out  # the same words as `lorawb train`
    assert "1 problem found" in out
    assert main(["doctor", str(project.root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["config_errors"][0].startswith(f"{project.config_path}:{line}: train.batch_size:")


def test_reg_folder_is_reported_with_class_tokens_and_balance(tmp_path):
    from PIL import Image

    from lorawb.core.project import Project, init_project

    root = tmp_path / "p"
    init_project(root, trigger="zkx_mira")
    for i in range(2):
        Image.new("RGB", (64, 64), (i * 90, 40, 40)).save(root / "dataset" / f"a{i}.png")
        (root / "dataset" / f"a{i}.txt").write_text("zkx_mira, red outfit")
    reg = root / "reg"
    for i in range(3):
        (reg / "1_woman").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (40, i * 70, 40)).save(reg / "1_woman" / f"r{i}.png")
    (reg / "1_woman" / "r0.txt").write_text("woman, blue dress")
    (reg / "loose").mkdir()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(reg / "loose" / "x.png")  # no caption, no N_class: unusable
    report = doctor(Project.load(root))
    assert report.reg is not None and report.reg.path == "reg/"
    [f] = report.reg.folders
    assert (f.folder, f.repeats, f.images, f.class_tokens, f.captioned) == ("1_woman", 1, 3, "woman", 1)
    assert report.reg.unusable == ["loose/x.png"] and report.reg.steps == 3
    assert report.images == 2  # reg images are not training images
    text = render_text(report)
    assert "reg images: reg/ (3 images, prior_loss_weight 1)" in text
    assert 'the rest "woman"' in text
    assert "each epoch uses 2 of them (1 unused" in text
    assert "loose/x.png" in text
    d = report.to_dict()
    assert d["reg"]["num_reg_images"] == 3 and d["reg"]["used_per_epoch"] == 2
    json.dumps(d)
    # no reg/: no section
    import shutil

    shutil.rmtree(reg)
    assert doctor(Project.load(root)).reg is None
