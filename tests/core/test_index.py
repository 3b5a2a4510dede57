"""The SQLite index: incremental rescans, removals, rebuild after deleting .lorawb/, threads."""

from __future__ import annotations

import os
import shutil
import threading

from PIL import Image

from lorawb.core import dataset
from lorawb.core.index import DatasetIndex
from lorawb.core.project import Project
from tests.core.problem_files import TRIGGER


def count_opens(monkeypatch) -> list[str]:
    """Record every image the scanner reads (read_image_facts) and every Pillow open."""
    opened: list[str] = []
    real_read = dataset.read_image_facts
    real_open = dataset.Image.open

    def read(path, root=None):
        opened.append(os.path.basename(path))
        return real_read(path, root)

    def pil_open(fp, *a, **kw):
        opened.append("Image.open")
        return real_open(fp, *a, **kw)

    monkeypatch.setattr(dataset, "read_image_facts", read)
    monkeypatch.setattr(dataset.Image, "open", pil_open)
    return opened


def comparable(result):
    return (result.images, result.unreadable, result.orphan_captions, result.non_utf8)


def test_unchanged_rescan_opens_no_image(problem_project, monkeypatch):
    index = DatasetIndex(problem_project)
    assert index.load_cached() is None  # never scanned
    first = index.refresh()
    assert first.opened == 20
    opened = count_opens(monkeypatch)
    again = index.refresh()
    assert opened == [] and again.opened == 0
    assert comparable(again) == comparable(first)
    # The cache alone gives the same view, for the app's first paint.
    assert comparable(index.load_cached()) == comparable(first)


def test_changed_file_is_reread_and_deleted_file_leaves(small_project, monkeypatch):
    index = DatasetIndex(small_project)
    index.refresh()
    d = small_project.dataset_dir / "10_zkx_mira"
    Image.new("RGB", (100, 300), (0, 255, 0)).save(d / "img_1.png")  # changed
    os.utime(d / "img_1.png", ns=(1, 1))  # a different mtime even on a coarse clock
    (d / "img_2.png").unlink()
    (d / "img_2.txt").unlink()
    (d / "img_3.txt").write_text(f"{TRIGGER}, edited elsewhere", encoding="utf-8")
    Image.new("RGB", (64, 64)).save(d / "new.png")
    opened = count_opens(monkeypatch)

    result = index.refresh()
    assert sorted(n for n in opened if n != "Image.open") == ["img_1.png", "new.png"]
    facts = result.by_rel()
    assert sorted(facts) == [
        f"10_zkx_mira/{n}" for n in ("img_0.png", "img_1.png", "img_3.png", "img_4.png", "new.png")
    ]
    assert (facts["10_zkx_mira/img_1.png"].width, facts["10_zkx_mira/img_1.png"].height) == (100, 300)
    assert facts["10_zkx_mira/img_3.png"].caption_text == f"{TRIGGER}, edited elsewhere"
    assert index.get("10_zkx_mira/img_2.png") is None
    assert index.get("10_zkx_mira/img_1.png").width == 100
    cached = index.load_cached()
    assert comparable(cached) == comparable(result)


def test_caption_appearing_or_vanishing_is_seen(small_project):
    index = DatasetIndex(small_project)
    index.refresh()
    d = small_project.dataset_dir / "10_zkx_mira"
    (d / "img_0.txt").unlink()
    (d / "img_1.txt").rename(d / "img_1.caption")
    (d / "orphan.txt").write_text("x", encoding="utf-8")
    result = index.refresh()
    facts = result.by_rel()
    assert facts["10_zkx_mira/img_0.png"].caption_rel is None
    assert facts["10_zkx_mira/img_1.png"].caption_rel == "10_zkx_mira/img_1.caption"
    assert result.orphan_captions == ["10_zkx_mira/orphan.txt"]
    assert index.load_cached().orphan_captions == ["10_zkx_mira/orphan.txt"]


def test_deleting_state_folder_rebuilds(small_project):
    index = DatasetIndex(small_project)
    first = index.refresh()
    shutil.rmtree(small_project.root / ".lorawb")
    assert index.load_cached() is None  # the same object notices the new, empty database
    again = index.refresh()
    assert again.opened == 5
    assert comparable(again) == comparable(first)
    # A fresh process-level view (new index object) reads the rebuilt cache.
    assert comparable(DatasetIndex(Project.load(small_project.root)).load_cached()) == comparable(first)


def test_index_of_another_dataset_folder_is_not_reused(small_project):
    index = DatasetIndex(small_project)
    index.refresh()
    other = small_project.root / "other"
    shutil.copytree(small_project.dataset_dir, other)
    small_project.save_setting("project.dataset_dir", "other")
    index2 = DatasetIndex(small_project)
    assert index2.load_cached() is None
    result = index2.refresh()
    assert result.opened == 5 and len(result.images) == 5


def test_unreadable_images_are_remembered_not_reopened(problem_project, monkeypatch):
    index = DatasetIndex(problem_project)
    first = index.refresh()
    opened = count_opens(monkeypatch)
    again = index.refresh()
    assert opened == []
    assert again.unreadable == first.unreadable
    # A corrupt file that gets fixed is read again (its size/mtime changed).
    bad = problem_project.dataset_dir / "10_mira" / "corrupt.png"
    Image.new("RGB", (300, 300)).save(bad)
    os.utime(bad, ns=(2, 2))
    fixed = index.refresh()
    assert opened == ["corrupt.png", "Image.open"]
    assert "10_mira/corrupt.png" in fixed.by_rel()
    assert "10_mira/corrupt.png" not in dict(fixed.unreadable)


def test_refresh_in_a_worker_thread_while_reading(small_project):
    index = DatasetIndex(small_project)
    index.refresh()
    errors: list[BaseException] = []
    results = []

    def work():
        try:
            for _ in range(5):
                results.append(index.refresh())
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    for _ in range(20):
        cached = index.load_cached()
        assert cached is not None and len(cached.images) == 5
    t.join()
    assert errors == [] and len(results) == 5
    index.close()


def test_duplicates_of(problem_project):
    index = DatasetIndex(problem_project)
    facts = index.refresh().by_rel()
    assert index.duplicates_of(facts["top.png"].content_hash) == ["10_mira/dup.png", "top.png"]


def test_renamed_repeat_folder_is_not_read_again(small_project, monkeypatch):
    index = DatasetIndex(small_project)
    index.refresh()
    ds = small_project.dataset_dir
    (ds / "10_zkx_mira").rename(ds / "3_zkx_mira")
    opened = count_opens(monkeypatch)
    result = index.refresh()
    assert opened == [] and result.opened == 0
    assert sorted(f.rel for f in result.images) == [f"3_zkx_mira/img_{i}.png" for i in range(5)]
    assert {(f.folder, f.repeats) for f in result.images} == {("3_zkx_mira", 3)}
    assert [f.caption_rel for f in result.images] == [f"3_zkx_mira/img_{i}.txt" for i in range(5)]
    assert index.get("10_zkx_mira/img_0.png") is None
    assert comparable(index.load_cached()) == comparable(result)
