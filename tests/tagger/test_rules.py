"""From labels to tags (thresholds, names, exclusions, replacements, order) and into a caption (the modes)."""

from __future__ import annotations

import pytest

from lorawb.core.config import TaggerSection
from lorawb.core.project import Project
from lorawb.errors import ConfigError
from lorawb.tagger.labels import CHARACTER, GENERAL, RATING, Label, caption_name, is_kaomoji
from lorawb.tagger.merge import merge_caption
from lorawb.tagger.select import Rules, select_tags

LABELS = (
    Label("general", 0.95, RATING),
    Label("sensitive", 0.04, RATING),
    Label("red_hair", 0.98, GENERAL),
    Label("white_background", 0.9, GENERAL),
    Label("smile", 0.40, GENERAL),
    Label("^_^", 0.50, GENERAL),
    Label("zkx_mira_(original)", 0.97, CHARACTER),
    Label("other_girl", 0.70, CHARACTER),
    Label("zkx_mira", 0.6, GENERAL),
)


def tags(**settings) -> list[str]:
    rules = Rules.from_settings(TaggerSection(**settings), trigger="zkx_mira")
    return [s.tag for s in select_tags(LABELS, rules).tags]


def test_thresholds_general_and_character():
    assert tags(threshold=0.35) == ["zkx mira (original)", "red hair", "white background", "^_^", "smile"]
    assert "smile" not in tags(threshold=0.45)
    assert "other girl" in tags(character_threshold=0.6)
    assert "other girl" not in tags(character_threshold=0.85)


def test_underscores_become_spaces_but_kaomoji_stay():
    assert caption_name("red_hair") == "red hair" and caption_name("^_^") == "^_^"
    assert [is_kaomoji(t) for t in ("o_o", "(o)_(o)", ">_<", "0_0", "v_arms", "red_hair")] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]
    assert "red_hair" in tags(keep_underscores=True)


def test_exclusions_replacements_and_the_invariant_list():
    rules = Rules.from_settings(
        TaggerSection(exclude=["White Background"], replace=["red_hair=crimson hair"], invariant=["smile"]),
        trigger="zkx_mira",
    )
    p = select_tags(LABELS, rules)
    assert [s.tag for s in p.tags] == ["zkx mira (original)", "crimson hair", "^_^"]
    dropped = {s.tag: why for s, why in p.dropped}
    assert dropped == {
        "white background": "excluded",
        "smile": "invariant: the trigger carries it",
        "zkx mira": "the trigger (already first)",  # the model's zkx_mira is the trigger
    }
    # The invariant list is a project setting a run may switch off.
    off = Rules.from_settings(TaggerSection(invariant=["smile"]), trigger="zkx_mira", use_invariant=False)
    assert "smile" in [s.tag for s in select_tags(LABELS, off).tags]


def test_character_first_max_tags_and_the_rating_last():
    assert tags(character_first=False)[:2] == ["red hair", "zkx mira (original)"]
    assert tags(max_tags=2) == ["zkx mira (original)", "red hair"]
    assert tags(ratings=True, max_tags=1) == ["zkx mira (original)", "general"]


def test_replacement_pairs_are_checked_with_the_key_and_line(tmp_path):
    (tmp_path / "lorawb.toml").write_text('[project]\nname = "x"\n\n[tagger]\nreplace = ["red_hair"]\n')
    with pytest.raises(ConfigError) as info:
        Project.load(tmp_path)
    assert info.value.line == 5
    assert info.value.message.startswith("tagger.replace: 'red_hair' is not a replacement pair: write old=new")
    (tmp_path / "lorawb.toml").write_text('[project]\nname = "x"\n\n[tagger]\nthreshold = 2\n')
    with pytest.raises(ConfigError, match="tagger.threshold: must be at most 1"):
        Project.load(tmp_path)


NEW = ["red hair", "smile", "forest"]


def merge(old: str, mode: str, keep: tuple[str, ...] = ()) -> str:
    return merge_caption(old, NEW, mode=mode, trigger="zkx_mira", keep_keys=frozenset(keep))


def test_fill_only_captions_images_without_a_caption():
    assert merge("", "fill") == "zkx_mira, red hair, smile, forest\n"
    assert merge("  \n", "fill") == "zkx_mira, red hair, smile, forest\n"
    assert merge("forest, beach\n", "fill") == "forest, beach\n"


def test_append_adds_what_the_caption_lacks_and_puts_the_trigger_first():
    assert merge("zkx_mira, Smile, bar\n", "append") == "zkx_mira, Smile, bar, red hair, forest\n"
    assert merge("bar, zkx_mira", "append") == "zkx_mira, bar, red hair, smile, forest"
    assert merge("bar, bar", "append") == "zkx_mira, bar, bar, red hair, smile, forest"  # the user's repeat stays
    assert merge("zkx_mira, red_hair, smile, forest\n", "append") == "zkx_mira, red_hair, smile, forest\n"


def test_replace_rewrites_after_the_trigger_keeping_kept_tags():
    assert merge("(zkx_mira:1.2), bar, 1girl, watercolor\n", "replace", keep=("watercolor",)) == (
        "(zkx_mira:1.2), watercolor, red hair, smile, forest\n"
    )
    assert merge("zkx_mira stands in a bar", "replace") == "zkx_mira, red hair, smile, forest"
    assert merge("bar", "replace") == "zkx_mira, red hair, smile, forest"
