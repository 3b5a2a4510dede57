"""`lorawb captions ...`: output, files on disk, exit codes."""

from __future__ import annotations

import json
import os

import pytest

from lorawb.cli import main
from lorawb.core.project import Project
from tests.core.captions_data import TRIGGER, make_project


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "p")


def cap(project, name="10_zkx_mira/img_0001.txt"):
    return (project.dataset_dir / name).read_text(encoding="utf-8")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_the_diff_and_writes_nothing(project, capsys):
    before = cap(project)
    code, out, _ = run(
        capsys, "captions", str(project.root), "add", "masterpiece", "--dry-run", "--where", "has:forest"
    )
    assert code == 0
    assert "+++ b/dataset/" in out and "+zkx_mira, forest" in out
    n = out.count("+++ b/")
    assert out.rstrip().endswith(f"would change {n} of {n} captions (has:forest); nothing written")
    assert cap(project) == before
    assert run(capsys, "captions", str(project.root), "history")[1] == "no caption operations yet\n"


def test_apply_then_undo_in_separate_invocations(project, capsys, monkeypatch):
    before = cap(project)
    monkeypatch.chdir(project.root)  # PROJECT defaults to the current folder
    code, out, _ = run(capsys, "captions", "replace", "short hair", "long hair")
    assert code == 0
    assert out.startswith("replace 'short hair' with 'long hair': changed ")
    assert "long hair" in cap(project) and "short hair" not in cap(project)
    code, out, _ = run(capsys, "captions", "history")
    assert "replace 'short hair' with 'long hair'" in out
    code, out, _ = run(capsys, "captions", "undo")
    assert code == 0 and out.startswith("undo replace 'short hair' with 'long hair': restored ")
    assert cap(project) == before
    assert (
        "replace 'short hair' with 'long hair'  (undone: redo brings it back)" in run(capsys, "captions", "history")[1]
    )
    assert run(capsys, "captions", "undo")[1].strip() == "nothing to undo"
    code, out, _ = run(capsys, "captions", "redo")
    assert code == 0 and "long hair" in cap(project)


def test_json_output(project, capsys):
    code, out, _ = run(capsys, "captions", str(project.root), "--json", "add", "zz", "--where", "in:5_extra")
    data = json.loads(out)
    assert code == 0 and data["changed"] == data["scanned"] == 100 and not data["conflicts"]
    assert all(p.startswith("dataset/5_extra/") for p in data["written"])
    code, out, _ = run(capsys, "captions", str(project.root), "remove", "zz", "--dry-run", "--json")
    data = json.loads(out)
    assert data["dry_run"] and data["changed"] == 100 and "zz" in data["files"][0]["old"]
    code, out, _ = run(capsys, "captions", str(project.root), "undo", "--json")
    [step] = json.loads(out)
    assert len(step["written"]) == 100


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["regex", "(oops", "x"], "bad regex '(oops'"),
        (["regex", "(a)", r"\2"], "bad replacement"),
        (["remove", "red scraf"], "unknown tag 'red scraf'"),
        (["replace", "nothing here", "x"], "unknown tag 'nothing here'"),
        (["rename-trigger", "qvr_lena", "x"], "unknown trigger 'qvr_lena'"),
        (["add", "x", "--where", "colour:red"], "unknown filter 'colour:red'"),
        (["add", "x", "--where", "in:nope"], "no such folder: nope"),
        (["composition", "--by", "mood"], "unknown tag group 'mood'"),
        (["undo", "0"], "1 or more"),
    ],
)
def test_user_errors_exit_2_with_a_clear_message(project, capsys, argv, message):
    before = cap(project)
    code, out, err = run(capsys, "captions", str(project.root), *argv)
    assert code == 2
    assert err.startswith("lorawb: ") and message in err
    assert "Traceback" not in err
    assert cap(project) == before


def test_unknown_tag_suggests_the_near_one(project, capsys):
    _, _, err = run(capsys, "captions", str(project.root), "remove", "red scraf")
    assert "hint: did you mean: red scarf" in err


def test_no_op_prints_usage(project, capsys):
    code, _, err = run(capsys, "captions", str(project.root))
    assert code == 2 and "usage: lorawb captions [PROJECT] OP" in err


def test_undo_refused_for_a_file_changed_since_exits_1(project, capsys):
    run(capsys, "captions", str(project.root), "add", "masterpiece")
    victim = project.dataset_dir / "10_zkx_mira/img_0001.txt"
    victim.write_text("edited in vim", encoding="utf-8")
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    code, out, _ = run(capsys, "captions", str(project.root), "undo")
    assert code == 1
    assert "conflict: dataset/10_zkx_mira/img_0001.txt: changed on disk by another program" in out
    assert victim.read_text() == "edited in vim"
    assert "masterpiece" not in cap(project, "10_zkx_mira/img_0002.txt")


def test_stats(project, capsys):
    code, out, _ = run(capsys, "captions", str(project.root), "stats", "--top", "5")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "300 images, 294 captioned, 26 distinct tags"
    assert lines[1].startswith(f"trigger '{TRIGGER}' leads 271 captions; 29 do not")
    table = lines[lines.index(next(x for x in lines if x.strip().startswith("count"))) + 1 :]
    assert table[0].split() == ["263", "87.7", "263", TRIGGER]
    assert table[-1].startswith("... 21 more")
    code, out, _ = run(capsys, "captions", str(project.root), "stats", "--json", "--where", "has:forest")
    data = json.loads(out)
    assert data["images"] == next(t["count"] for t in data["tags"] if t["key"] == "forest")


def test_composition(project, capsys):
    code, out, _ = run(capsys, "captions", str(project.root), "composition", "--by", "context,style")
    assert code == 0
    assert "context \\ style" in out
    bar = next(x for x in out.splitlines() if x.startswith("bar "))
    assert "0!" in bar
    assert "gaps (context x style, thin below 8): bar x pixel art (empty); beach x sketch (thin: 1)" in out
    data = json.loads(run(capsys, "captions", str(project.root), "composition", "--json")[1])
    assert data["pairs"][0]["empty"] == [["bar", "pixel art"]]


def test_trigger_sets_lorawb_toml_when_unset_and_rename_follows(project, capsys):
    project.save_setting("project.trigger", "")
    code, out, _ = run(capsys, "captions", str(project.root), "trigger", "zkx_mira")
    assert code == 0 and "lorawb.toml: trigger = 'zkx_mira'" in out
    assert Project.load(project.root).trigger == "zkx_mira"
    code, out, _ = run(capsys, "captions", str(project.root), "rename-trigger", "zkx_mira", "qvr_lena")
    assert code == 0 and "lorawb.toml: trigger = 'qvr_lena' (was 'zkx_mira')" in out
    assert cap(project).startswith("qvr_lena, ")
    text = (project.root / "lorawb.toml").read_text()
    assert 'trigger = "qvr_lena"' in text and "# The trigger phrase leads every caption" in text
