"""One tag identity: ``blue_hair``, ``Blue Hair`` and ``blue hair`` are one tag in every view."""

from __future__ import annotations

import random

from PIL import Image

from lorawb.core import caption_ops as co
from lorawb.core.caption_stats import complete, tag_stats
from lorawb.core.captions import tag_key
from lorawb.core.composition import composition
from lorawb.core.doctor import diagnose
from lorawb.core.project import init_project
from lorawb.core.triage import Filter, Triage, apply_filter
from lorawb.train.data import transform_caption

SPELLINGS = ["blue_hair", "Blue Hair", "blue hair", "(blue  hair:1.2)"]


def project_with_spellings(tmp_path):
    project = init_project(tmp_path / "p", trigger="zkx_mira")
    d = project.dataset_dir / "10_zkx_mira"
    d.mkdir()
    for i, spelling in enumerate(SPELLINGS):
        Image.new("RGB", (64, 64), (i * 50, 0, 0)).save(d / f"img_{i}.png")
        (d / f"img_{i}.txt").write_text(f"zkx_mira, {spelling}, forest", encoding="utf-8")
    Image.new("RGB", (64, 64)).save(d / "other.png")
    (d / "other.txt").write_text("zkx_mira, red hair, forest", encoding="utf-8")
    return project


def test_one_key():
    assert {tag_key(s) for s in SPELLINGS} == {"blue hair"}
    assert tag_key("blue hairs") != tag_key("blue hair")


def test_every_view_counts_one_tag(tmp_path):
    project = project_with_spellings(tmp_path)
    files = co.load_captions(project)

    stats = tag_stats(files, project.trigger)  # the Captions tag table and `captions stats`
    assert stats.count("Blue_Hair") == 4 and stats.count("blue hair") == 4
    assert len([t for t in stats.tags if t.key == "blue hair"]) == 1

    report = diagnose(project)  # the doctor's tag counts
    assert [c for n, c in report.top_tags if tag_key(n) == "blue hair"] == [4]

    items = Triage(project).items()  # Triage's has/lacks tag filters
    assert len(apply_filter(items, Filter(has_tag="Blue Hair"))) == 4
    assert len(apply_filter(items, Filter(has_tag="blue_hair"))) == 4
    assert len(apply_filter(items, Filter(lacks_tag="blue hair"))) == 1

    comp = composition(files, {"hair": ["blue_hair", "red hair"]})  # the composition table
    assert comp.value_counts["hair"]["blue_hair"] == 4 and comp.value_counts["hair"]["red hair"] == 1

    # Selections and bulk edits: has: and remove match every spelling.
    assert len(co.parse_where("has:BLUE_HAIR").filter(files)) == 4
    cs = co.build_changeset(project, co.RemoveTag("blue hair"), files=files)
    assert len(cs) == 4 and all("hair" not in (c.new or "").replace("red hair", "") for c in cs.changes)
    assert co.Dedupe().rewrite("zkx_mira, blue_hair, Blue Hair") == "zkx_mira, blue_hair"

    blue = next(t.name for t in stats.tags if t.key == "blue hair")
    assert complete(stats.vocabulary(), "blue_h")[:1] == [blue]  # completion matches across spellings too


def test_the_trainer_finds_the_trigger_in_any_spelling():
    rng = random.Random(0)
    assert transform_caption("forest, Zkx Mira, watercolor", "zkx_mira", rng) == "Zkx Mira, forest, watercolor"
    assert transform_caption("forest, watercolor", "zkx_mira", rng, add_trigger=True) == "zkx_mira, forest, watercolor"
    out = transform_caption("zkx mira, a, b, c", "zkx_mira", rng, shuffle=True, keep_tokens=0)
    assert out.startswith("zkx mira, ")  # the trigger is kept first even with keep_tokens 0
