"""Tag statistics, tag completion and the composition table, checked against brute-force counts."""

from __future__ import annotations

import pytest

from lorawb.core import caption_ops as co
from lorawb.core.caption_stats import complete, tag_stats
from lorawb.core.captions import Caption, tag_key
from lorawb.core.composition import composition, value_matches
from lorawb.errors import CaptionError
from tests.core.captions_data import CONTEXTS, STYLES, TRIGGER, make_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("stats") / "p")


@pytest.fixture(scope="module")
def files(project):
    return co.load_captions(project)


def test_tag_frequency_and_trigger(files):
    st = tag_stats(files, TRIGGER)
    brute: dict[str, int] = {}
    for f in files:
        for k in {tag_key(t) for t in Caption.parse(f.text or "").tags} - {""}:
            brute[k] = brute.get(k, 0) + 1
    assert {t.key: t.count for t in st.tags} == brute
    counts = [t.count for t in st.tags]
    assert counts == sorted(counts, reverse=True)
    assert st.tags[0].key == tag_key(TRIGGER)
    assert st.total == 300 and len(st.uncaptioned) == 6
    leads = [
        f for f in files if f.text and (Caption.parse(f.text).keys[0] == tag_key(TRIGGER) or f.text.startswith(TRIGGER))
    ]
    assert st.with_trigger == len(leads)
    assert sorted(st.missing_trigger) == sorted(f.image for f in files if f not in leads)
    ship = next(t for t in st.tags if t.key == "spaceship")
    assert ship.with_trigger == sum(1 for f in leads if "spaceship" in f.keys) < ship.count
    red = next(t for t in st.tags if t.key == "red scarf")
    assert red.name == "red scarf"  # the common spelling, not "(red scarf:1.2)"
    assert st.count("Red Scarf") == red.count


def test_stats_of_a_selection(project):
    sel = co.load_captions(project, co.parse_where("has:forest"))
    st = tag_stats(sel, TRIGGER)
    assert st.count("forest") == st.total == len(sel)


def test_completion_ranks_by_frequency(files):
    vocab = tag_stats(files, TRIGGER).vocabulary()
    assert complete(vocab, "s")[0] in ("short hair", "smiling", "spaceship", "sketch")
    got = complete(vocab, "s", limit=20)
    starts = [g for g in got if g.startswith("s")]
    assert got[: len(starts)] == starts == sorted(starts, key=vocab.index)  # prefix matches first, by frequency
    assert "red scarf" in got[len(starts) :]
    assert complete(vocab, "hair") == ["short hair"]  # inside a tag, after prefix matches
    assert complete(vocab, "red", exclude={"red scarf"}) == []
    assert complete(vocab, "") == []


def test_composition_counts_and_gaps(project, files):
    comp = composition(files, project.config.tags.groups)
    for group, values in (("context", CONTEXTS), ("style", STYLES)):
        for v in values:
            assert comp.value_counts[group][v] == sum(1 for f in files if value_matches(f, v))
        assert comp.missing[group] == [f.image for f in files if not any(value_matches(f, v) for v in values)]
    [table] = comp.pairs
    assert (table.rows, table.cols) == ("context", "style")
    assert table.counts[("bar", "pixel art")] == 0
    assert table.empty == [("bar", "pixel art")]
    assert ("beach", "sketch") in table.thin
    for (a, b), n in table.counts.items():
        members = table.members[(a, b)]
        assert n == len(members) == sum(1 for f in files if value_matches(f, a) and value_matches(f, b))


def test_sentence_captions_count_for_their_words(files):
    f = next(f for f in files if "at dusk" in (f.text or ""))
    assert f.caption.is_sentence
    ctx = [v for v in CONTEXTS if value_matches(f, v)]
    assert len(ctx) == 1 and ctx[0] in f.text


def test_composition_by_one_pair_and_errors(project, files):
    groups = {**project.config.tags.groups, "pose": ["standing", "sitting"]}
    assert len(composition(files, groups).pairs) == 3
    comp = composition(files, groups, by=["style", "pose"])
    assert [(t.rows, t.cols) for t in comp.pairs] == [("style", "pose")]
    assert comp.value_counts["pose"]["standing"] > 0  # from the sentence captions
    with pytest.raises(CaptionError, match="unknown tag group 'mood'"):
        composition(files, groups, by=["mood"])
    with pytest.raises(CaptionError, match="no tag groups"):
        composition(files, {})
