"""The SQLite index of every project image: incremental rescans and updates, removals, moves, rebuild, threads."""

from __future__ import annotations

import os
import shutil
import threading

from PIL import Image

from lorawb.core import dataset
from lorawb.core.index import ProjectIndex
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


def comparable(snapshot):
    result = snapshot.scan_result() if hasattr(snapshot, "scan_result") else snapshot
    return (result.images, result.unreadable, result.orphan_captions, result.non_utf8)


def ds(key: str) -> str:
    return f"dataset/{key}"


def test_unchanged_rescan_opens_no_image(problem_project, monkeypatch):
    index = ProjectIndex(problem_project)
    assert index.load_cached() is None  # never scanned
    first = index.refresh()
    assert first.opened == 22  # the dataset's 20 and rejected/'s 2
    opened = count_opens(monkeypatch)
    again = index.refresh()
    assert opened == [] and again.opened == 0
    assert comparable(again) == comparable(first)
    # The cache alone gives the same view, for the app's first paint.
    assert comparable(index.load_cached()) == comparable(first)


def test_changed_file_is_reread_and_deleted_file_leaves(small_project, monkeypatch):
    index = ProjectIndex(small_project)
    index.refresh()
    d = small_project.dataset_dir / "10_zkx_mira"
    Image.new("RGB", (100, 300), (0, 255, 0)).save(d / "img_1.png")  # changed
    os.utime(d / "img_1.png", ns=(1, 1))  # a different mtime even on a coarse clock
    (d / "img_2.png").unlink()
    (d / "img_2.txt").unlink()
    (d / "img_3.txt").write_text(f"{TRIGGER}, edited elsewhere", encoding="utf-8")
    Image.new("RGB", (64, 64)).save(d / "new.png")
    opened = count_opens(monkeypatch)

    result = index.refresh().scan_result()
    assert sorted(n for n in opened if n != "Image.open") == ["img_1.png", "new.png"]
    facts = result.by_rel()
    assert sorted(facts) == [
        f"10_zkx_mira/{n}" for n in ("img_0.png", "img_1.png", "img_3.png", "img_4.png", "new.png")
    ]
    assert (facts["10_zkx_mira/img_1.png"].width, facts["10_zkx_mira/img_1.png"].height) == (100, 300)
    assert facts["10_zkx_mira/img_3.png"].caption_text == f"{TRIGGER}, edited elsewhere"
    assert index.get(ds("10_zkx_mira/img_2.png")) is None
    assert index.get(ds("10_zkx_mira/img_1.png")).width == 100
    cached = index.load_cached()
    assert comparable(cached) == comparable(result)


def test_caption_appearing_or_vanishing_is_seen(small_project):
    index = ProjectIndex(small_project)
    index.refresh()
    d = small_project.dataset_dir / "10_zkx_mira"
    (d / "img_0.txt").unlink()
    (d / "img_1.txt").rename(d / "img_1.caption")
    (d / "orphan.txt").write_text("x", encoding="utf-8")
    result = index.refresh().scan_result()
    facts = result.by_rel()
    assert facts["10_zkx_mira/img_0.png"].caption_rel is None
    assert facts["10_zkx_mira/img_1.png"].caption_rel == "10_zkx_mira/img_1.caption"
    assert result.orphan_captions == ["10_zkx_mira/orphan.txt"]
    assert index.load_cached().scan_result().orphan_captions == ["10_zkx_mira/orphan.txt"]


def test_deleting_state_folder_rebuilds(small_project):
    index = ProjectIndex(small_project)
    first = index.refresh()
    shutil.rmtree(small_project.root / ".lorawb")
    assert index.load_cached() is None  # the same object notices the new, empty database
    again = index.refresh()
    assert again.opened == 5
    assert comparable(again) == comparable(first)
    # A fresh process-level view (new index object) reads the rebuilt cache.
    assert comparable(ProjectIndex(Project.load(small_project.root)).load_cached()) == comparable(first)


def test_index_of_another_dataset_folder_is_not_reused(small_project):
    index = ProjectIndex(small_project)
    index.refresh()
    other = small_project.root / "other"
    shutil.copytree(small_project.dataset_dir, other)
    small_project.save_setting("project.dataset_dir", "other")
    index2 = ProjectIndex(small_project)
    assert index2.load_cached() is None
    result = index2.refresh()
    assert result.opened == 5 and len(result.scan_result().images) == 5


def test_unreadable_images_are_remembered_not_reopened(problem_project, monkeypatch):
    index = ProjectIndex(problem_project)
    first = index.scan()
    opened = count_opens(monkeypatch)
    again = index.scan()
    assert opened == []
    assert again.unreadable == first.unreadable
    # A corrupt file that gets fixed is read again (its size/mtime changed).
    bad = problem_project.dataset_dir / "10_mira" / "corrupt.png"
    Image.new("RGB", (300, 300)).save(bad)
    os.utime(bad, ns=(2, 2))
    fixed = index.scan()
    assert opened == ["corrupt.png", "Image.open"]
    assert "10_mira/corrupt.png" in fixed.by_rel()
    assert "10_mira/corrupt.png" not in dict(fixed.unreadable)


def test_refresh_in_a_worker_thread_while_reading(small_project):
    index = ProjectIndex(small_project)
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
        assert cached is not None and len(cached.scan_result().images) == 5
    t.join()
    assert errors == [] and len(results) == 5
    index.close()


def test_duplicates_of(problem_project):
    index = ProjectIndex(problem_project)
    facts = index.scan().by_rel()
    assert index.duplicates_of(facts["top.png"].content_hash) == [ds("10_mira/dup.png"), ds("top.png")]


def test_renamed_repeat_folder_is_not_read_again(small_project, monkeypatch):
    index = ProjectIndex(small_project)
    index.refresh()
    root = small_project.dataset_dir
    (root / "10_zkx_mira").rename(root / "3_zkx_mira")
    opened = count_opens(monkeypatch)
    result = index.scan()
    assert opened == [] and result.opened == 0
    assert sorted(f.rel for f in result.images) == [f"3_zkx_mira/img_{i}.png" for i in range(5)]
    assert {(f.folder, f.repeats) for f in result.images} == {("3_zkx_mira", 3)}
    assert [f.caption_rel for f in result.images] == [f"3_zkx_mira/img_{i}.txt" for i in range(5)]
    assert index.get(ds("10_zkx_mira/img_0.png")) is None
    assert comparable(index.load_cached()) == comparable(result)


# --- incremental updates (what the file watcher hands in) ---------------------------------


def test_update_reads_only_the_new_image_and_stores_it(small_project, monkeypatch):
    index = ProjectIndex(small_project)
    index.refresh()
    d = small_project.dataset_dir / "10_zkx_mira"
    Image.new("RGB", (96, 64)).save(d / "new.png")
    (d / "new.txt").write_text(f"{TRIGGER}, fresh", encoding="utf-8")
    opened = count_opens(monkeypatch)
    delta = index.update([d / "new.png", d / "new.txt"])
    assert [n for n in opened if n != "Image.open"] == ["new.png"]
    assert delta.added == [ds("10_zkx_mira/new.png")] and delta.opened == 1
    f = index.get(ds("10_zkx_mira/new.png"))
    assert (f.width, f.height, f.caption_text, f.area) == (96, 64, f"{TRIGGER}, fresh", "dataset")
    # Stored in the same step: another index object (another process) sees it from the DB alone.
    other = ProjectIndex(Project.load(small_project.root)).load_cached()
    assert ds("10_zkx_mira/new.png") in other.facts


def test_update_of_a_caption_rereads_only_the_caption(small_project, monkeypatch):
    index = ProjectIndex(small_project)
    index.refresh()
    cap = small_project.dataset_dir / "10_zkx_mira" / "img_2.txt"
    cap.write_text(f"{TRIGGER}, edited", encoding="utf-8")
    opened = count_opens(monkeypatch)
    delta = index.update([cap])
    assert opened == []
    assert delta.changed == [ds("10_zkx_mira/img_2.png")] and delta.captions == {ds("10_zkx_mira/img_2.png")}
    assert index.get(ds("10_zkx_mira/img_2.png")).caption_text == f"{TRIGGER}, edited"
    assert not index.update([cap])  # nothing changed since: an empty delta


def test_update_sees_a_move_into_rejected_without_reading_the_image(small_project, monkeypatch):
    index = ProjectIndex(small_project)
    index.refresh()
    ds_dir = small_project.dataset_dir
    (ds_dir / "rejected" / "10_zkx_mira").mkdir(parents=True)
    moves = [(ds_dir / "10_zkx_mira" / n, ds_dir / "rejected" / "10_zkx_mira" / n) for n in ("img_1.png", "img_1.txt")]
    for a, b in moves:
        os.rename(a, b)
    opened = count_opens(monkeypatch)
    delta = index.update([p for pair in moves for p in pair])
    assert opened == []
    new = ds("rejected/10_zkx_mira/img_1.png")
    assert delta.moved == {ds("10_zkx_mira/img_1.png"): new}
    f = index.get(new)
    assert f.rejected and f.folder == "10_zkx_mira" and f.caption_rel == "rejected/10_zkx_mira/img_1.txt"
    snap = index.snapshot()
    assert len(snap.scan_result().images) == 4 and snap.counts().rejected == 1


def test_update_of_a_deleted_or_renamed_folder(small_project, monkeypatch):
    index = ProjectIndex(small_project)
    index.refresh()
    root = small_project.dataset_dir
    os.rename(root / "10_zkx_mira", root / "4_zkx_mira")
    opened = count_opens(monkeypatch)
    delta = index.update([root / "10_zkx_mira", root / "4_zkx_mira"])
    assert opened == [] and len(delta.moved) == 5
    assert {f.repeats for f in index.snapshot().images()} == {4}
    shutil.rmtree(root / "4_zkx_mira")
    delta = index.update([root / "4_zkx_mira"])
    assert len(delta.removed) == 5 and index.snapshot().images() == []


def test_update_keeps_orphan_captions_and_ignores_other_files(small_project):
    index = ProjectIndex(small_project)
    index.refresh()
    d = small_project.dataset_dir / "10_zkx_mira"
    (d / "lonely.txt").write_text("x", encoding="utf-8")
    (d / ".hidden.png").write_bytes(b"junk")
    (d / "notes.md").write_text("x", encoding="utf-8")
    delta = index.update([d / "lonely.txt", d / ".hidden.png", d / "notes.md", small_project.root / "x.png"])
    assert delta.orphans and not delta.keys
    assert index.snapshot().scan_result().orphan_captions == ["10_zkx_mira/lonely.txt"]
    (d / "img_0.png").unlink()
    index.update([d / "img_0.png"])
    assert index.snapshot().scan_result().orphan_captions == ["10_zkx_mira/img_0.txt", "10_zkx_mira/lonely.txt"]
    Image.new("RGB", (64, 64)).save(d / "lonely.png")
    index.update([d / "lonely.png"])
    assert index.snapshot().scan_result().orphan_captions == ["10_zkx_mira/img_0.txt"]


def test_inbox_and_rejected_are_areas_of_one_index(small_project):
    inbox = small_project.inbox_dir
    Image.new("RGB", (64, 64)).save(inbox / "cand.png")
    (inbox / "rejected").mkdir()
    Image.new("RGB", (64, 64)).save(inbox / "rejected" / "no.png")
    snap = ProjectIndex(small_project).refresh()
    assert {k: (f.area, f.rejected) for k, f in snap.facts.items() if not k.startswith("dataset/")} == {
        "inbox/cand.png": ("inbox", False),
        "inbox/rejected/no.png": ("inbox", True),
    }
    assert snap.counts("inbox").images == 1 and snap.counts("inbox").rejected == 1


def test_updates_end_where_a_full_rescan_ends(problem_project):
    """A series of outside changes handed in path by path gives the same index as a rescan."""
    index = ProjectIndex(problem_project)
    index.refresh()
    root = problem_project.dataset_dir
    touched = []
    (root / "10_mira" / "la.txt").write_text(f"{TRIGGER}, changed", encoding="utf-8")
    touched.append(root / "10_mira" / "la.txt")
    os.rename(root / "5_other", root / "7_other")
    touched += [root / "5_other", root / "7_other"]
    (root / "top.txt").unlink()
    touched.append(root / "top.txt")
    Image.new("RGB", (300, 200)).save(root / "10_mira" / "corrupt.png")
    os.utime(root / "10_mira" / "corrupt.png", ns=(3, 3))
    touched.append(root / "10_mira" / "corrupt.png")
    index.update(touched)
    incremental = index.snapshot()
    full = ProjectIndex(problem_project).refresh()
    assert comparable(incremental) == comparable(full)


def test_closing_waits_for_a_refresh_running_in_another_thread(small_project, monkeypatch):
    """Quitting the app closes the index while its count worker may still be storing a scan:
    closing a SQLite connection under a thread writing through it crashed the process."""
    import time

    from lorawb.core import index as index_mod

    idx = ProjectIndex(small_project)
    idx.refresh()
    Image.new("RGB", (64, 64)).save(small_project.dataset_dir / "10_zkx_mira" / "new.png")
    scanning = threading.Event()
    real_scan = ProjectIndex._scan_area

    def slow_scan(self, *a, **kw):
        scanning.set()
        time.sleep(0.5)  # the scan is under way when close() is called
        return real_scan(self, *a, **kw)

    monkeypatch.setattr(index_mod.ProjectIndex, "_scan_area", slow_scan)
    errors: list[BaseException] = []

    def worker():
        try:
            idx.refresh()
        except BaseException as exc:  # noqa: BLE001 - the test reports what the thread hit
            errors.append(exc)

    th = threading.Thread(target=worker)
    th.start()
    assert scanning.wait(5)
    assert idx.close() is True  # waited for the refresh, then closed
    th.join(10)
    assert errors == []
    assert "10_zkx_mira/new.png" in ProjectIndex(small_project).refresh().scan_result().by_rel()
