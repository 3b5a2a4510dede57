"""`lorawb triage` and `lorawb dedupe` give scripts the same information as the Triage tab."""

from __future__ import annotations

import json

import pytest

from lorawb.cli import main
from tests.core.triage_fixtures import make_project, save, scene, shifted


@pytest.fixture
def project(tmp_path):
    p = make_project(tmp_path, n=4)
    base = scene(300, (320, 240))
    save(base, p.dataset_dir / "10_zkx_mira" / "dup_a.png", "zkx_mira, bar")
    save(shifted(base, 2, 1), p.dataset_dir / "10_zkx_mira" / "dup_b.png", "zkx_mira, bar")
    save(scene(301), p.inbox_dir / "cand.png", "zkx_mira, beach")
    return p


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_decide_list_and_undo(project, capsys):
    root = str(project.root)
    code, out, _ = run(capsys, "triage", root, "--reject", "dataset/10_zkx_mira/img_001.png")
    assert code == 0 and "-> dataset/rejected/10_zkx_mira/img_001.png" in out
    assert (project.dataset_dir / "rejected/10_zkx_mira/img_001.txt").is_file()
    # An absolute path works too.
    run(capsys, "triage", root, "--flag", str(project.dataset_dir / "10_zkx_mira" / "img_002.png"))
    run(capsys, "triage", root, "--keep", "dataset/10_zkx_mira/img_000.png")

    assert run(capsys, "triage", root, "--list", "rejected")[1].split() == ["dataset/rejected/10_zkx_mira/img_001.png"]
    assert run(capsys, "triage", root, "--list", "flagged")[1].split() == ["dataset/10_zkx_mira/img_002.png"]
    assert run(capsys, "triage", root, "--list", "kept")[1].split() == ["dataset/10_zkx_mira/img_000.png"]
    unreviewed = run(capsys, "triage", root, "--list", "unreviewed")[1].split()
    assert unreviewed == [
        "dataset/10_zkx_mira/dup_a.png",
        "dataset/10_zkx_mira/dup_b.png",
        "dataset/10_zkx_mira/img_003.png",
    ]
    code, out, _ = run(capsys, "triage", root)
    assert "5 images" in out and "1 rejected" in out and "1 kept" in out

    code, out, _ = run(capsys, "triage", root, "--list", "all", "--json")
    rows = json.loads(out)
    assert {r["path"]: r["state"] for r in rows}["dataset/10_zkx_mira/img_000.png"] == "keep"
    assert all(r["width"] > 0 and r["caption"] for r in rows)

    run(capsys, "triage", root, "--undo")  # undo the keep
    assert run(capsys, "triage", root, "--list", "kept")[1] == ""


def test_filters_on_the_command_line(project, capsys):
    root = str(project.root)
    assert run(capsys, "triage", root, "--list", "all", "--has-tag", "bar")[1].split() == [
        "dataset/10_zkx_mira/dup_a.png",
        "dataset/10_zkx_mira/dup_b.png",
    ]
    assert run(capsys, "triage", root, "--dups")[1].split() == [
        "dataset/10_zkx_mira/dup_a.png",
        "dataset/10_zkx_mira/dup_b.png",
    ]
    assert run(capsys, "triage", root, "--list", "all", "--inbox")[1].split() == ["inbox/cand.png"]


def test_inbox_keep_needs_a_folder(project, capsys):
    root = str(project.root)
    code, _, err = run(capsys, "triage", root, "--keep", "inbox/cand.png")
    assert code == 2 and "keep_folder" in err and "Traceback" not in err
    code, out, _ = run(capsys, "triage", root, "--keep", "inbox/cand.png", "--into", "10_zkx_mira")
    assert code == 0 and "-> dataset/10_zkx_mira/cand.png" in out


def test_bad_state_is_a_clear_error(project, capsys):
    code, _, err = run(capsys, "triage", str(project.root), "--list", "maybe")
    assert code == 2 and "unknown triage state 'maybe'" in err


def test_dedupe_text_and_json(project, capsys):
    root = str(project.root)
    code, out, _ = run(capsys, "dedupe", root)
    assert code == 0
    assert "group 1 (2 images)" in out and "dup_a.png" in out and "dup_b.png" in out
    assert "1 group, 2 of 7 images, threshold 6" in out
    code, out, _ = run(capsys, "dedupe", root, "--threshold", "0", "--json")
    data = json.loads(out)
    assert data["threshold"] == 0 and data["hashed"] == 7
    code, _, err = run(capsys, "dedupe", root, "--threshold", "99")
    assert code == 2 and "0-64" in err


def test_image_paths_relative_to_the_dataset_work_too(project, capsys):
    code, out, _ = run(capsys, "triage", str(project.root), "--flag", "10_zkx_mira/img_003.png")
    assert code == 0
    assert run(capsys, "triage", str(project.root), "--list", "flagged")[1].split() == [
        "dataset/10_zkx_mira/img_003.png"
    ]
