"""Triage decisions: marks with time, moves to rejected/ and back, captions following, name clashes, inbox."""

from __future__ import annotations

import shutil
import time

import pytest
from PIL import Image

from lorawb.core import dataset
from lorawb.core import triage as tri
from lorawb.core.triage import Triage, TriageError, free_stem, move_no_clobber
from tests.core.triage_fixtures import make_project, save, scene

FOLDER = "dataset/10_zkx_mira"


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


def states(t: Triage) -> dict[str, str]:
    return {i.rel: i.state for i in t.items()}


def test_new_images_are_unreviewed(project):
    t = Triage(project)
    s = states(t)
    assert len(s) == 6
    assert set(s.values()) == {tri.UNREVIEWED}


def test_keep_and_flag_are_recorded_with_time_and_survive_a_new_store(project):
    t = Triage(project)
    before = time.time()
    t.keep(f"{FOLDER}/img_000.png")
    t.flag(f"{FOLDER}/img_001.png")
    t.close()
    t2 = Triage(project)
    items = {i.rel: i for i in t2.items()}
    assert items[f"{FOLDER}/img_000.png"].state == tri.KEEP
    assert items[f"{FOLDER}/img_001.png"].state == tri.FLAG
    assert items[f"{FOLDER}/img_002.png"].state == tri.UNREVIEWED
    assert before <= items[f"{FOLDER}/img_000.png"].decided_at <= time.time()
    log = t2.history()
    assert [r["action"] for r in log] == ["flag", "keep"]
    assert all(r["time"] >= before for r in log)
    # Keep -> flag replaces the mark; clear removes it. Nothing moved.
    t2.flag(f"{FOLDER}/img_000.png")
    assert t2.state_of(f"{FOLDER}/img_000.png") == tri.FLAG
    d = t2.clear(f"{FOLDER}/img_000.png")
    assert d.new_rel == d.rel and not d.moved
    assert t2.state_of(f"{FOLDER}/img_000.png") == tri.UNREVIEWED
    assert (project.root / FOLDER / "img_000.png").is_file()


def test_reject_moves_image_and_caption_and_unreject_moves_them_back(project):
    t = Triage(project)
    src = project.root / FOLDER / "img_002.png"
    data, cap = src.read_bytes(), src.with_suffix(".txt").read_text()
    d = t.reject(f"{FOLDER}/img_002.png")
    assert d.moved and d.new_rel == "dataset/rejected/10_zkx_mira/img_002.png"
    moved = project.root / d.new_rel
    assert not src.exists() and not src.with_suffix(".txt").exists()
    assert moved.read_bytes() == data
    assert moved.with_suffix(".txt").read_text() == cap
    assert states(t)[d.new_rel] == tri.REJECT
    assert f"{FOLDER}/img_002.png" not in states(t)

    back = t.clear(d.new_rel)
    assert back.new_rel == f"{FOLDER}/img_002.png" and back.moved
    assert src.read_bytes() == data and src.with_suffix(".txt").read_text() == cap
    assert not moved.exists() and not moved.with_suffix(".txt").exists()
    assert states(t)[f"{FOLDER}/img_002.png"] == tri.UNREVIEWED


def test_reject_keeps_the_nested_subfolder(project):
    save(scene(50), project.dataset_dir / "5_extra" / "close ups" / "face.png", "zkx_mira, face")
    t = Triage(project)
    d = t.reject("dataset/5_extra/close ups/face.png")
    assert d.new_rel == "dataset/rejected/5_extra/close ups/face.png"
    assert (project.root / "dataset/rejected/5_extra/close ups/face.txt").read_text() == "zkx_mira, face"
    item = {i.rel: i for i in t.items()}[d.new_rel]
    assert item.folder == "5_extra/close ups" and item.area == "dataset"


def test_reject_name_clash_never_overwrites(project):
    rej = project.dataset_dir / "rejected" / "10_zkx_mira"
    save(scene(99), rej / "img_003.png", "an older reject")
    old_bytes = (rej / "img_003.png").read_bytes()
    t = Triage(project)
    d = t.reject(f"{FOLDER}/img_003.png")
    assert d.new_rel == "dataset/rejected/10_zkx_mira/img_003-2.png"
    assert (rej / "img_003.png").read_bytes() == old_bytes
    assert (rej / "img_003.txt").read_text() == "an older reject"
    assert (rej / "img_003-2.txt").read_text() == "zkx_mira, pose 3, forest"
    # Unreject goes back to the original name, not the suffixed one.
    back = t.clear(d.new_rel)
    assert back.new_rel == f"{FOLDER}/img_003.png"
    assert (project.root / FOLDER / "img_003.txt").read_text() == "zkx_mira, pose 3, forest"


def test_unreject_name_clash_never_overwrites(project):
    t = Triage(project)
    d = t.reject(f"{FOLDER}/img_004.png")
    # Meanwhile another tool put a new image (and caption) with the same name in the dataset.
    save(scene(77), project.root / FOLDER / "img_004.png", "a newcomer")
    newcomer = (project.root / FOLDER / "img_004.png").read_bytes()
    back = t.clear(d.new_rel)
    assert back.new_rel == f"{FOLDER}/img_004-2.png"
    assert (project.root / FOLDER / "img_004.png").read_bytes() == newcomer
    assert (project.root / FOLDER / "img_004.txt").read_text() == "a newcomer"
    assert (project.root / FOLDER / "img_004-2.txt").read_text() == "zkx_mira, pose 4, forest"


def test_clash_with_a_caption_or_another_image_extension_counts(project):
    rej = project.dataset_dir / "rejected" / "10_zkx_mira"
    rej.mkdir(parents=True)
    (rej / "img_000.txt").write_text("orphan caption")  # no image, but the stem is taken
    save(scene(5), rej / "img_001.jpg")  # kohya would pair img_001.jpg with img_001.txt
    t = Triage(project)
    assert t.reject(f"{FOLDER}/img_000.png").new_rel.endswith("img_000-2.png")
    assert t.reject(f"{FOLDER}/img_001.png").new_rel.endswith("img_001-2.png")
    assert (rej / "img_000.txt").read_text() == "orphan caption"
    assert free_stem(rej, "img_000", ".png") == "img_000-3"


def test_dot_caption_files_follow_too(project):
    img = save(scene(8), project.root / FOLDER / "cap.png")
    img.with_suffix(".caption").write_text("zkx_mira, caption ext")
    t = Triage(project)
    d = t.reject(f"{FOLDER}/cap.png")
    assert (project.root / d.new_rel).with_suffix(".caption").read_text() == "zkx_mira, caption ext"
    assert {i.rel: i for i in t.items()}[d.new_rel].caption_text == "zkx_mira, caption ext"


def test_image_without_caption_moves_alone(project):
    save(scene(9), project.root / FOLDER / "bare.png")
    t = Triage(project)
    d = t.reject(f"{FOLDER}/bare.png")
    assert (project.root / d.new_rel).is_file()
    assert not (project.root / d.new_rel).with_suffix(".txt").exists()
    assert t.clear(d.new_rel).new_rel == f"{FOLDER}/bare.png"


def test_rejected_state_lives_on_disk_when_the_state_db_is_deleted(project):
    t = Triage(project)
    d = t.reject(f"{FOLDER}/img_005.png")
    t.close()
    shutil.rmtree(project.root / ".lorawb")
    t2 = Triage(project)
    assert states(t2)[d.new_rel] == tri.REJECT
    back = t2.clear(d.new_rel)  # no record of the origin: mirror the rejected/ layout
    assert back.new_rel == f"{FOLDER}/img_005.png"


def test_keep_or_flag_on_a_rejected_image_moves_it_back(project):
    t = Triage(project)
    d = t.reject(f"{FOLDER}/img_001.png")
    k = t.keep(d.new_rel)
    assert k.new_rel == f"{FOLDER}/img_001.png" and k.state == tri.KEEP
    assert states(t)[k.new_rel] == tri.KEEP
    d = t.reject(f"{FOLDER}/img_002.png")
    f = t.flag(d.new_rel)
    assert f.new_rel == f"{FOLDER}/img_002.png" and states(t)[f.new_rel] == tri.FLAG


def test_a_mark_follows_the_image_through_reject_and_back(project):
    t = Triage(project)
    t.flag(f"{FOLDER}/img_000.png")
    d = t.reject(f"{FOLDER}/img_000.png")
    assert states(t)[d.new_rel] == tri.REJECT
    back = t.clear(d.new_rel)
    assert states(t)[back.new_rel] == tri.UNREVIEWED


def test_undo_last_reverses_a_reject_and_a_mark(project):
    t = Triage(project)
    t.flag(f"{FOLDER}/img_000.png")
    d = t.reject(f"{FOLDER}/img_000.png")
    u = t.undo_last()
    assert u.new_rel == f"{FOLDER}/img_000.png"
    assert (project.root / FOLDER / "img_000.txt").is_file()
    assert not (project.root / d.new_rel).exists()
    assert t.state_of(f"{FOLDER}/img_000.png") == tri.FLAG  # the mark before the reject
    t.undo_last()
    assert t.state_of(f"{FOLDER}/img_000.png") == tri.UNREVIEWED
    assert t.undo_last() is None


def test_decisions_on_missing_or_foreign_files_are_clear_errors(project, tmp_path):
    t = Triage(project)
    with pytest.raises(TriageError, match="no such image"):
        t.reject(f"{FOLDER}/nope.png")
    (project.root / "runs" / "x.png").write_bytes(b"")
    with pytest.raises(TriageError, match="dataset, inbox or reg"):
        t.reject("runs/x.png")
    with pytest.raises(TriageError, match="unknown triage action"):
        t.decide("maybe", f"{FOLDER}/img_000.png")


def test_move_no_clobber_refuses_to_replace(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a")
    b.write_text("b")
    with pytest.raises(FileExistsError):
        move_no_clobber(a, b)
    assert a.read_text() == "a" and b.read_text() == "b"


# --------------------------------------------------------------------------- inbox


def test_keeping_an_inbox_image_moves_it_with_its_caption_into_the_keep_folder(project):
    save(scene(20), project.inbox_dir / "cell_r0c1.png", "zkx_mira, spaceship")
    save(scene(21), project.root / FOLDER / "cell_r0c2.png", "already here")
    save(scene(22), project.inbox_dir / "cell_r0c2.png", "zkx_mira, bar")
    t = Triage(project)
    assert {i.rel: i.area for i in t.items()}["inbox/cell_r0c1.png"] == "inbox"
    with pytest.raises(TriageError, match="keep_folder"):
        t.keep("inbox/cell_r0c1.png")
    project.save_setting("triage.keep_folder", "10_zkx_mira")
    d = t.keep("inbox/cell_r0c1.png")
    assert d.moved and d.new_rel == f"{FOLDER}/cell_r0c1.png"
    assert (project.root / FOLDER / "cell_r0c1.txt").read_text() == "zkx_mira, spaceship"
    assert not (project.inbox_dir / "cell_r0c1.png").exists()
    assert states(t)[d.new_rel] == tri.KEEP
    # A name already in the dataset: the newcomer gets a suffix, the old one stays.
    d2 = t.keep("inbox/cell_r0c2.png")
    assert d2.new_rel == f"{FOLDER}/cell_r0c2-2.png"
    assert (project.root / FOLDER / "cell_r0c2.txt").read_text() == "already here"
    # Undo puts it back into the inbox.
    t.undo_last()
    assert (project.inbox_dir / "cell_r0c2.png").is_file()
    assert (project.inbox_dir / "cell_r0c2.txt").read_text() == "zkx_mira, bar"


def test_keep_into_an_explicit_new_folder_and_bad_folders_refused(project):
    save(scene(23), project.inbox_dir / "sub" / "a.png", "zkx_mira, beach")
    t = Triage(project)
    for bad in ("../outside", "rejected", "rejected/10_x"):
        with pytest.raises(TriageError):
            t.keep("inbox/sub/a.png", folder=bad)
    d = t.keep("inbox/sub/a.png", folder="3_from_matrix")
    assert d.new_rel == "dataset/3_from_matrix/a.png"
    assert (project.dataset_dir / "3_from_matrix" / "a.txt").read_text() == "zkx_mira, beach"


def test_rejecting_an_inbox_image_goes_to_inbox_rejected_and_back(project):
    save(scene(24), project.inbox_dir / "b.png", "zkx_mira, bad hands")
    t = Triage(project)
    d = t.reject("inbox/b.png")
    assert d.new_rel == "inbox/rejected/b.png"
    assert (project.inbox_dir / "rejected" / "b.txt").is_file()
    items = {i.rel: i for i in t.items()}
    assert items[d.new_rel].area == "inbox" and items[d.new_rel].state == tri.REJECT
    assert t.clear(d.new_rel).new_rel == "inbox/b.png"


# --------------------------------------------------------------------------- facts


def test_facts_follow_exif_orientation_and_report_unreadable_files(project):
    img = Image.new("RGB", (300, 120), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(project.root / FOLDER / "rot.jpg", exif=exif)
    (project.root / FOLDER / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (project.root / FOLDER / "empty.jpg").write_bytes(b"")
    # PostScript named .png: must be refused, never handed to Ghostscript.
    (project.root / FOLDER / "disguised.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    items = {i.rel: i for i in Triage(project).items()}
    rot = items[f"{FOLDER}/rot.jpg"]
    assert (rot.width, rot.height, rot.format) == (120, 300, "JPEG")
    assert items[f"{FOLDER}/broken.png"].error.startswith("truncated")
    assert items[f"{FOLDER}/empty.jpg"].error == "empty file (0 bytes)"
    assert items[f"{FOLDER}/disguised.png"].error.startswith("not a PNG, JPEG")
    assert items[f"{FOLDER}/img_000.png"].mode == "RGB"


def test_second_listing_reads_no_image_header_and_sees_changes(project, monkeypatch):
    t = Triage(project)
    t.items()
    calls = []
    real = dataset.read_image_facts
    monkeypatch.setattr(dataset, "read_image_facts", lambda p, root=None: calls.append(p) or real(p, root))
    items = {i.rel: i for i in t.items()}
    assert calls == []
    # A changed image and a changed caption are picked up.
    save(scene(1, (40, 30)), project.root / FOLDER / "img_001.png")
    (project.root / FOLDER / "img_002.txt").write_text("zkx_mira, edited elsewhere")
    items = {i.rel: i for i in t.items()}
    assert [p.name for p in calls] == ["img_001.png"]
    assert (items[f"{FOLDER}/img_001.png"].width, items[f"{FOLDER}/img_001.png"].height) == (40, 30)
    assert items[f"{FOLDER}/img_002.png"].caption_text == "zkx_mira, edited elsewhere"
    (project.root / FOLDER / "img_002.txt").unlink()
    assert {i.rel: i for i in t.items()}[f"{FOLDER}/img_002.png"].caption_text is None


def test_reg_folder_is_an_area_rejects_stay_inside_it(project):
    reg = project.root / "reg" / "1_woman"
    save(scene(90), reg / "r0.png")
    save(scene(91), reg / "r1.png", "woman, blue dress")
    t = Triage(project)
    items = {i.rel: i for i in t.items()}
    assert items["reg/1_woman/r0.png"].area == "reg" and items["reg/1_woman/r0.png"].folder == "1_woman"
    d = t.reject("reg/1_woman/r1.png")
    assert d.new_rel == "reg/rejected/1_woman/r1.png"
    assert (project.root / "reg/rejected/1_woman/r1.txt").exists()
    back = t.clear(d.new_rel)
    assert back.new_rel == "reg/1_woman/r1.png"
    k = t.keep("reg/1_woman/r0.png")  # kept in place: only inbox images move into the dataset
    assert k.new_rel == "reg/1_woman/r0.png" and not k.moved
    c = tri.count(t.items(), area="reg", min_resolution=0)
    assert c.keep == 1 and c.unreviewed == 1
    t.close()
