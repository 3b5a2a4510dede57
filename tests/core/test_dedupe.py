"""Near-duplicate groups on generated near-duplicates; the hash cache; the pair search against brute force."""

from __future__ import annotations

import random

import pytest

from lorawb.core import dedupe
from lorawb.core.dedupe import close_pairs, distance, find_duplicates, group_hashes
from lorawb.core.project import init_project
from lorawb.core.triage import Triage
from tests.core.triage_fixtures import noisy, save, scene, shifted


@pytest.fixture
def project(tmp_path):
    """3 families (original + 2px shift + noise + JPEG re-encode at q=35) and 4 unrelated images."""
    p = init_project(tmp_path / "proj", trigger="zkx_mira")
    d = p.dataset_dir / "10_zkx_mira"
    for fam in range(3):
        base = scene(100 + 7 * fam, (320, 240))
        save(base, d / f"fam{fam}_a.png", "zkx_mira")
        save(shifted(base, 2, 1), d / f"fam{fam}_b.png")
        save(noisy(base), d / f"fam{fam}_c.png")
        base.save(d / f"fam{fam}_d.jpg", quality=35)
    for k in range(4):
        save(scene(500 + k, (320, 240)), d / f"solo{k}.png")
    return p


FAMILIES = [[f"dataset/10_zkx_mira/fam{f}_{x}" for x in ("a.png", "b.png", "c.png", "d.jpg")] for f in range(3)]


def test_groups_are_exactly_the_families(project):
    res = find_duplicates(project, workers=1)
    assert res.threshold == 6  # lorawb.toml [triage] dup_threshold
    assert res.hashed == 16 and res.errors == {}
    assert sorted(sorted(g.rels) for g in res.groups) == FAMILIES
    for g in res.groups:
        assert all(m.distance <= 6 for m in g.members)
        # The suggested keeper has the most pixels, then the largest file: never the small JPEG.
        assert not g.keeper.endswith(".jpg")
    assert res.dup_rels == {r for f in FAMILIES for r in f}
    assert res.group_of("dataset/10_zkx_mira/solo0.png") is None


def test_threshold_zero_and_config(project):
    for g in find_duplicates(project, threshold=0, workers=1).groups:
        assert len({m.hash for m in g.members}) == 1
    project.save_setting("triage.dup_threshold", 0)
    assert find_duplicates(project, workers=1).threshold == 0


def test_exact_copies_group_at_threshold_zero(project):
    src = project.dataset_dir / "10_zkx_mira" / "solo1.png"
    (project.inbox_dir / "copy_of_solo1.png").write_bytes(src.read_bytes())
    res = find_duplicates(project, threshold=0, workers=1)
    assert ["dataset/10_zkx_mira/solo1.png", "inbox/copy_of_solo1.png"] in [sorted(g.rels) for g in res.groups]
    # Without the inbox, the copy is not considered.
    res = find_duplicates(project, threshold=0, include_inbox=False, workers=1)
    assert all("inbox/copy_of_solo1.png" not in g.rels for g in res.groups)


def test_hashes_are_cached_and_follow_moves(project, monkeypatch):
    find_duplicates(project, workers=1)
    calls = []
    real = dedupe.image_hash
    monkeypatch.setattr(dedupe, "image_hash", lambda p: calls.append(p.name) or real(p))
    find_duplicates(project, workers=1)
    assert calls == []
    # A reject + unreject moves the file twice: the cached hash goes with it.
    t = Triage(project)
    moved = t.reject("dataset/10_zkx_mira/solo2.png").new_rel
    t.clear(moved)
    find_duplicates(project, workers=1)
    assert calls == []
    # Rewriting an image (new mtime/size) rehashes just that one.
    save(scene(999, (320, 240)), project.dataset_dir / "10_zkx_mira" / "solo3.png")
    find_duplicates(project, workers=1)
    assert calls == ["solo3.png"]


def test_rejected_images_are_left_out(project):
    Triage(project).reject("dataset/10_zkx_mira/fam0_b.png")
    res = find_duplicates(project, workers=1)
    assert sorted(res.group_of("dataset/10_zkx_mira/fam0_a.png").rels) == [
        "dataset/10_zkx_mira/fam0_a.png",
        "dataset/10_zkx_mira/fam0_c.png",
        "dataset/10_zkx_mira/fam0_d.jpg",
    ]


def test_unreadable_images_are_reported_not_raised(project):
    (project.dataset_dir / "10_zkx_mira" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    res = find_duplicates(project, workers=1)
    assert "dataset/10_zkx_mira/bad.png" in res.errors
    assert res.to_json()["unreadable"][0]["path"] == "dataset/10_zkx_mira/bad.png"


def test_progress_is_reported(project):
    seen = []
    find_duplicates(project, workers=2, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 16) and seen[-1] == (16, 16)


@pytest.mark.parametrize("threshold", [0, 1, 3, 6, 7, 8, 12, 20])
def test_pair_search_matches_brute_force(threshold):
    rnd = random.Random(threshold)
    values = []
    for _ in range(150):  # clusters of nearby hashes, like a dataset of variations
        base = rnd.getrandbits(64)
        for _ in range(rnd.randint(1, 3)):
            v = base
            for _ in range(rnd.randint(0, 10)):
                v ^= 1 << rnd.randrange(64)
            values.append(v)
    values = sorted(set(values))
    brute = {
        (i, j)
        for i in range(len(values))
        for j in range(i + 1, len(values))
        if distance(values[i], values[j]) <= threshold
    }
    assert set(close_pairs(values, threshold)) == brute
    if threshold >= 3:
        assert brute  # the data has close pairs here, so the comparison is not vacuous


def test_group_hashes_chains_and_collapses_identical():
    h = {"a": 0b0, "b": 0b111, "c": 0b111111, "d": 0b0, "far": (1 << 64) - 1}
    assert group_hashes(h, 3) == [["a", "b", "c", "d"]]
    assert group_hashes(h, 0) == [["a", "d"]]


def test_a_disguised_postscript_file_is_not_opened(project, monkeypatch):
    # Named .png, really EPS: Pillow would hand it to Ghostscript if any format were allowed.
    (project.dataset_dir / "10_zkx_mira" / "evil.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n")
    from PIL import EpsImagePlugin

    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: pytest.fail("Ghostscript was reached"))
    with pytest.raises(Exception, match="cannot identify"):
        dedupe.image_hash(project.dataset_dir / "10_zkx_mira" / "evil.png")
    res = find_duplicates(project, workers=1)
    assert "dataset/10_zkx_mira/evil.png" in res.errors


def test_many_images_are_hashed_in_processes_on_every_allowed_core(tmp_path, monkeypatch):
    """Above PROCESS_MIN images the hashes come from a process pool; they equal the in-process ones."""
    from PIL import Image

    project = init_project(tmp_path / "p", trigger="zkx_mira")
    folder = project.dataset_dir / "1_x"
    folder.mkdir(parents=True)
    for i in range(12):
        Image.radial_gradient("L").rotate(i * 30).convert("RGB").save(folder / f"img_{i:02d}.png")
    rels = sorted(f"dataset/1_x/{p.name}" for p in folder.iterdir())
    made: list[int] = []
    real_pool = dedupe.ProcessPoolExecutor

    def pool(*args, **kwargs):
        made.append(kwargs["max_workers"])
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(dedupe, "ProcessPoolExecutor", pool)
    monkeypatch.setattr(dedupe, "PROCESS_MIN", 4)
    hashes, errors = dedupe.compute_hashes(project, rels, workers=2)
    assert made == [2] and not errors and len(hashes) == 12
    assert hashes == {rel: dedupe.image_hash(project.root / rel) for rel in rels}
    assert dedupe.allowed_cores() >= 1
