"""Triage filters, sorts and counts over a real project folder."""

from __future__ import annotations

import os

import pytest

from lorawb.core import triage as tri
from lorawb.core.triage import Filter, Triage, TriageError, apply_filter, count, list_items, parse_state, sort_items
from tests.core.triage_fixtures import make_project, save, scene

F = "dataset/10_zkx_mira"


@pytest.fixture
def project(tmp_path):
    p = make_project(tmp_path, n=4)  # img_000..003, 96..120 px wide, 96 high: all low-res (< 256)
    save(scene(10, (512, 256)), p.dataset_dir / "5_wide" / "wide.png", "zkx_mira, beach, Red_Scarf")
    save(scene(11, (300, 600)), p.dataset_dir / "5_wide" / "tall" / "tall.png")  # no caption
    (p.dataset_dir / "5_wide" / "empty.png").write_bytes(b"")  # unreadable
    save(scene(12, (400, 400)), p.inbox_dir / "cand.png", "zkx_mira, spaceship")
    t = Triage(p)
    t.keep(f"{F}/img_000.png")
    t.flag(f"{F}/img_001.png")
    t.reject(f"{F}/img_002.png")
    t.close()
    return p


def rels(project, flt=None, **kw):
    return [i.rel for i in list_items(project, flt, **kw)]


def test_default_view_is_the_dataset_without_rejects(project):
    assert rels(project) == [
        "dataset/10_zkx_mira/img_000.png",
        "dataset/10_zkx_mira/img_001.png",
        "dataset/10_zkx_mira/img_003.png",
        "dataset/5_wide/empty.png",
        "dataset/5_wide/tall/tall.png",
        "dataset/5_wide/wide.png",
    ]


def test_state_filters(project):
    assert rels(project, Filter(state=tri.KEEP)) == [f"{F}/img_000.png"]
    assert rels(project, Filter(state=tri.FLAG)) == [f"{F}/img_001.png"]
    assert rels(project, Filter(state=tri.REJECT)) == ["dataset/rejected/10_zkx_mira/img_002.png"]
    assert f"{F}/img_000.png" not in rels(project, Filter(state=tri.UNREVIEWED))
    assert len(rels(project, Filter(state=tri.UNREVIEWED))) == 4


def test_missing_caption_low_res_and_folder(project):
    assert rels(project, Filter(missing_caption=True)) == ["dataset/5_wide/empty.png", "dataset/5_wide/tall/tall.png"]
    # min_resolution 256: the 96-px images are low-res; 512x256 and 300x600 are not; unreadable is not "low-res".
    assert rels(project, Filter(low_res=True)) == [f"{F}/img_000.png", f"{F}/img_001.png", f"{F}/img_003.png"]
    assert rels(project, Filter(folder="5_wide")) == [
        "dataset/5_wide/empty.png",
        "dataset/5_wide/tall/tall.png",
        "dataset/5_wide/wide.png",
    ]
    assert rels(project, Filter(folder="5_wide/tall")) == ["dataset/5_wide/tall/tall.png"]
    assert rels(project, Filter(folder="5_wid")) == []  # a folder, not a prefix of names


def test_tag_filters_ignore_case_spaces_and_underscores(project):
    assert rels(project, Filter(has_tag="red scarf")) == ["dataset/5_wide/wide.png"]
    assert rels(project, Filter(has_tag="BEACH")) == ["dataset/5_wide/wide.png"]
    lacking = rels(project, Filter(lacks_tag="forest"))
    assert lacking == ["dataset/5_wide/empty.png", "dataset/5_wide/tall/tall.png", "dataset/5_wide/wide.png"]
    assert rels(project, Filter(has_tag="forest", lacks_tag="pose 1")) == [f"{F}/img_000.png", f"{F}/img_003.png"]


def test_duplicates_filter_uses_the_given_groups(project):
    dups = {f"{F}/img_003.png", "dataset/5_wide/wide.png", "inbox/cand.png"}
    assert rels(project, Filter(duplicates=True), dup_rels=dups) == [f"{F}/img_003.png", "dataset/5_wide/wide.png"]


def test_inbox_view(project):
    assert rels(project, Filter(area="inbox")) == ["inbox/cand.png"]


def test_filters_combine(project):
    assert rels(project, Filter(state=tri.UNREVIEWED, low_res=True)) == [f"{F}/img_003.png"]


def test_sorts(project):
    items = [i for i in Triage(project).items() if i.area == "dataset" and i.state != tri.REJECT and not i.error]
    by_aspect = [i.name for i in sort_items(items, "aspect")]
    assert by_aspect[0] == "tall.png" and by_aspect[-1] == "wide.png"
    by_size = sort_items(items, "size")
    assert [i.size_bytes for i in by_size] == sorted(i.size_bytes for i in items)
    # Time: make one file the newest.
    target = project.root / F / "img_000.png"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**12))
    newest = sort_items(Triage(project).items(), "time", reverse=True)[0]
    assert newest.rel == f"{F}/img_000.png"
    assert [i.rel for i in sort_items(items, "name", reverse=True)][0] == "dataset/5_wide/wide.png"
    with pytest.raises(TriageError, match="unknown sort"):
        sort_items(items, "colour")


def test_counts_and_describe(project):
    c = count(Triage(project).items(), min_resolution=256)
    assert (c.total, c.keep, c.flag, c.reject, c.unreviewed) == (6, 1, 1, 1, 4)
    assert (c.no_caption, c.low_res, c.unreadable) == (2, 3, 1)
    assert "6 images" in c.line() and "1 rejected" in c.line()
    assert count(Triage(project).items(), area="inbox").total == 1
    assert Filter(state=tri.FLAG, has_tag="beach").describe() == "dataset · flagged · +beach"


def test_parse_state_accepts_the_words_people_type():
    assert parse_state("kept") == tri.KEEP
    assert parse_state("Rejected") == tri.REJECT
    assert parse_state("all") is None
    with pytest.raises(TriageError, match="unknown triage state"):
        parse_state("maybe")


def test_apply_filter_without_a_project(project):
    items = Triage(project).items()
    assert [i.name for i in apply_filter(items, Filter(has_tag="spaceship", area="inbox"))] == ["cand.png"]
