"""Every bulk caption operation and selection filter, over a few hundred generated captions."""

from __future__ import annotations

import pytest

from lorawb.core import caption_ops as co
from lorawb.core.captions import Caption, tag_key
from lorawb.errors import CaptionError
from tests.core.captions_data import TRIGGER, make_project


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "p")


@pytest.fixture
def files(project):
    return co.load_captions(project)


TKEY = tag_key(TRIGGER)  # the trigger as tags are compared ("zkx mira": `_` is a space)


def keys_of(text: str | None) -> list[str]:
    return [tag_key(t) for t in Caption.parse(text or "").tags]


def nonempty(text: str | None) -> list[str]:
    return [k for k in keys_of(text) if k]


def test_load_reads_every_image_once_and_skips_rejected(project, files):
    assert len(files) == 300
    assert len({f.image for f in files}) == 300
    assert not any("rejected" in f.image for f in files)
    assert sum(1 for f in files if f.text is None) == 6  # every 50th image has no caption file
    by_image = {f.image: f for f in files}
    assert by_image["dataset/10_zkx_mira/img_0008.png"].path.suffix == ".caption"
    crlf = by_image["dataset/5_extra/img_0027.png"]
    assert crlf.newline == "\r\n" and "\r" not in crlf.text
    assert by_image["dataset/10_zkx_mira/img_0010.png"].encoding == "cp1252"
    assert by_image["dataset/10_zkx_mira/img_0010.png"].text.endswith("café")


@pytest.mark.parametrize("at", ["start", "end", "after-trigger"])
def test_add_tag(project, files, at):
    cs = co.build_changeset(project, co.AddTag("masterpiece", at=at, trigger=TRIGGER), files=files)
    assert len(cs) == cs.scanned == 300  # nobody has it yet; images with no caption file get one
    for ch in cs.changes:
        before, after = nonempty(ch.old), nonempty(ch.new)
        if not before:  # a new caption leads with the trigger, wherever the tag was asked for
            assert after == [TKEY, "masterpiece"]
            continue
        assert [k for k in after if k != "masterpiece"] == before  # everything else kept, in order
        if at == "start":
            assert after[0] == "masterpiece"
        elif at == "end":
            assert after[-1] == "masterpiece"
        elif before and before[0] == TKEY:
            assert after[:2] == [TKEY, "masterpiece"]
        assert ch.new.endswith("\n") == (ch.old or "").endswith("\n")
    # Adding it again changes nothing.
    again = [co.CaptionFile(c.image, str(c.path), c.new) for c in cs.changes]
    assert len(co.build_changeset(project, co.AddTag("masterpiece", at=at, trigger=TRIGGER), files=again)) == 0


def test_add_after_trigger_needs_a_trigger(project):
    with pytest.raises(CaptionError, match="no trigger set"):
        co.AddTag("x", at="after-trigger", trigger="")
    with pytest.raises(CaptionError, match="bad position"):
        co.AddTag("x", at="middle")
    with pytest.raises(CaptionError, match="bad tag"):
        co.AddTag("a, b")


def test_add_at_end_goes_before_trailing_empty_tags(project):
    assert co.AddTag("new").rewrite("a, b,\n") == "a, b, new, \n"


def test_remove_tag_also_removes_weighted_forms(project, files):
    have = [f for f in files if "red scarf" in f.keys]
    cs = co.build_changeset(project, co.RemoveTag("Red Scarf"), files=files)
    assert len(cs) == len(have) > 50
    assert any("(red scarf:1.2)" in (c.old or "") for c in cs.changes)
    for ch in cs.changes:
        assert "red scarf" not in keys_of(ch.new)
        assert [k for k in keys_of(ch.old) if k != "red scarf"] == keys_of(ch.new)


def test_unknown_tag_is_refused_with_suggestions(project, files):
    with pytest.raises(CaptionError, match="unknown tag 'red scraf'") as exc:
        co.build_changeset(project, co.RemoveTag("red scraf"), files=files)
    assert "did you mean: red scarf" in str(exc.value)
    for op in (co.ReplaceTag("nope", "x"), co.MoveTag("nope"), co.RenameTrigger("nobody", "x")):
        with pytest.raises(CaptionError, match="unknown"):
            co.build_changeset(project, op, files=files)


def test_replace_tag_keeps_weight_and_avoids_duplicates(project, files):
    cs = co.build_changeset(project, co.ReplaceTag("red scarf", "blue scarf"), files=files)
    assert len(cs) == sum(1 for f in files if "red scarf" in f.keys)
    for ch in cs.changes:
        assert "red scarf" not in keys_of(ch.new)
        assert keys_of(ch.new).count("blue scarf") == 1
        if "(red scarf:1.2)" in ch.old:
            assert "(blue scarf:1.2)" in ch.new
    # Replacing into a tag the caption already has drops the old one instead of duplicating.
    assert co.ReplaceTag("forest", "night").rewrite("zkx_mira, forest, night") == "zkx_mira, night"


def test_move_tag_front_keeps_trigger_first_and_back(project, files):
    front = co.build_changeset(project, co.MoveTag("rain", "front", trigger=TRIGGER), files=files)
    assert len(front) > 30
    for ch in front.changes:
        after = keys_of(ch.new)
        if keys_of(ch.old)[0] == TKEY:
            assert after[:2] == [TKEY, "rain"]
        else:
            assert after[0] == "rain"
        assert sorted(after) == sorted(keys_of(ch.old))
    back = co.build_changeset(project, co.MoveTag("zkx_mira", "back", trigger=TRIGGER), files=files)
    assert all(nonempty(c.new)[-1] == TKEY for c in back.changes if c.new.count(",") > 1)


def test_regex_replace(project, files):
    cs = co.build_changeset(project, co.RegexReplace(r"\bshort (\w+)", r"long \1"), files=files)
    assert len(cs) == sum(1 for f in files if "short hair" in (f.text or ""))
    assert all("long hair" in c.new and "short hair" not in c.new for c in cs.changes)
    assert all(c.new.endswith("\n") == c.old.endswith("\n") for c in cs.changes)


@pytest.mark.parametrize(
    ("pattern", "repl", "msg"), [("(unclosed", "x", "bad regex"), ("(a)", r"\2", "bad replacement")]
)
def test_regex_errors(pattern, repl, msg):
    with pytest.raises(CaptionError, match=msg):
        co.RegexReplace(pattern, repl)


def test_set_trigger(project, files):
    cs = co.build_changeset(project, co.SetTrigger(TRIGGER), files=files)
    missing = [f for f in files if not f.text or not (f.text.startswith(TRIGGER))]
    assert len(cs) == len(missing) > 20
    for ch in cs.changes:
        assert keys_of(ch.new)[0] == TKEY
        assert keys_of(ch.new).count(TKEY) == 1
    # A sentence that already starts with the trigger is left alone; a trigger elsewhere moves to the front.
    assert co.SetTrigger(TRIGGER).rewrite("zkx_mira walking in a forest") == "zkx_mira walking in a forest"
    assert co.SetTrigger(TRIGGER).rewrite("forest, zkx_mira, rain\n") == "zkx_mira, forest, rain\n"
    assert co.SetTrigger(TRIGGER).rewrite("") == TRIGGER


def test_rename_trigger_whole_words_everywhere(project, files):
    cs = co.build_changeset(project, co.RenameTrigger(TRIGGER, "qvr_lena"), files=files)
    assert len(cs) == sum(1 for f in files if TRIGGER in (f.text or ""))
    assert all(TRIGGER not in c.new and "qvr_lena" in c.new for c in cs.changes)
    op = co.RenameTrigger("zkx_mira", "qvr_lena")
    assert (
        op.rewrite("zkx_mirabel, zkx_mira smiling, (zkx_mira:1.2)") == "zkx_mirabel, qvr_lena smiling, (qvr_lena:1.2)"
    )


def test_dedupe_sort_strip(project, files):
    dd = co.build_changeset(project, co.Dedupe(), files=files)
    assert dd.changes
    for ch in dd.changes:
        k = nonempty(ch.new)
        assert len(k) == len(set(k)) and "" not in keys_of(ch.new)
    srt = co.build_changeset(project, co.SortTags(trigger=TRIGGER), files=files)
    for ch in srt.changes:
        k = keys_of(ch.new)
        if nonempty(ch.old)[0] == TKEY:
            assert k[0] == TKEY and k[1:] == sorted(k[1:])
        else:
            assert k == sorted(k)
    st = co.build_changeset(project, co.StripEmpty(), files=files)
    assert len(st) == sum(1 for f in files if "" in keys_of(f.text))
    assert all("" not in keys_of(c.new) for c in st.changes)
    assert co.StripEmpty().rewrite("a,, b,\n") == "a, b\n"


def test_selection_filters(project, files):
    def count(q):
        return len(co.load_captions(project, co.parse_where(q)))

    forest = sum(1 for f in files if "forest" in f.keys)
    forest_wc = sum(1 for f in files if "forest" in f.keys and "watercolor" not in f.keys)
    assert count("has:forest") == forest
    assert count("has:forest -has:watercolor") == forest_wc
    assert count(["has:forest", "-has:watercolor"]) == forest_wc
    assert count('has:"pixel art"') == sum(1 for f in files if "pixel art" in f.keys)
    assert count("in:5_extra") == 100
    assert count("in:dataset/5_extra has:forest") == sum(
        1 for f in files if "forest" in f.keys and "5_extra" in f.image
    )
    assert count("text:dusk") == sum(1 for f in files if "dusk" in (f.text or ""))
    assert count("file:dataset/10_zkx_mira/img_0001.png file:dataset/10_zkx_mira/img_0002.txt") == 2
    assert count("-has:zkx_mira") == sum(1 for f in files if TKEY not in f.keys)


@pytest.mark.parametrize("bad", ["forest", "has:", "color:red", '"unclosed', "in:nope", "file:nope.png"])
def test_bad_filters_are_refused(project, bad):
    with pytest.raises(CaptionError):
        co.load_captions(project, co.parse_where(bad))


def test_operation_limited_to_selection(project):
    sel = co.parse_where("in:5_extra -has:beach")
    cs = co.build_changeset(project, co.AddTag("checked"), sel)
    assert cs.scanned == len(cs) > 0
    assert all(c.image.startswith("dataset/5_extra/") for c in cs.changes)
    assert all("beach" not in keys_of(c.old) for c in cs.changes)
    assert "in:5_extra" in cs.summary()


def test_diff_preview(project, files):
    cs = co.build_changeset(project, co.ReplaceTag("rain", "snow"), files=files)
    diff = cs.diff()
    assert diff.startswith("--- a/dataset/")
    assert diff.count("+++ b/dataset/") == len(cs)
    first = cs.changes[0]
    assert f"-{first.old.rstrip()}\n" in diff and f"+{first.new.rstrip()}\n" in diff
    assert cs.diff(limit=2).count("+++ ") == 2
    created = co.build_changeset(project, co.SetTrigger(TRIGGER), files=[f for f in files if f.text is None])
    assert created.diff().startswith("--- /dev/null\n+++ b/dataset/")
    multi = co.Change("i.png", "i.txt", first.path, "a\nb\n", "a\nc\n")
    assert co.change_diff(multi).splitlines()[2:] == ["@@ -1,2 +1,2 @@", " a", "-b", "+c"]


def test_lossy_files_are_reported(project, files):
    assert co.build_changeset(project, co.AddTag("zz"), files=files).lossy == []  # cp1252 can hold "zz"
    cs = co.build_changeset(project, co.AddTag("日本"), files=files)
    assert [c.image for c in cs.lossy] == ["dataset/10_zkx_mira/img_0010.png"]  # cp1252 cannot: UTF-8


def test_selection_applied_to_captions_already_read(project, files):
    for q in ("in:5_extra has:forest", "file:dataset/10_zkx_mira/img_0001.png -has:rain", "-has:zkx_mira text:dusk"):
        sel = co.parse_where(q)
        assert [f.image for f in sel.select(project, files)] == [f.image for f in co.load_captions(project, sel)]
