"""The variation grid: axes × count, captions that lead with the trigger and name what varies,
prompts (the description before a LoRA, the trigger with one), stable seeds, gap pairs, and
the character sheet's errors in lorawb's words."""

from __future__ import annotations

import pytest

from lorawb.core.charsheet import CharacterSheet, GenerateSection
from lorawb.core.project import Project
from lorawb.errors import ConfigError
from lorawb.generate.grid import variation_grid

GROUPS = {"context": ["forest", "bar"], "style": ["flat", "watercolor"], "pose": ["standing", "waving"]}
SHEET = CharacterSheet(description="blue hair, orange outfit, scarf", count=2)


def test_the_grid_multiplies_the_axes_from_the_tag_groups_and_counts_per_combination():
    grid = variation_grid(SHEET, GROUPS, "zkx_mira")
    assert len(grid) == 2 * 2 * 2 * 2  # contexts × styles × poses × count
    first = grid[0]
    assert first.values == (("context", "forest"), ("style", "flat"), ("pose", "standing"))
    assert first.prompt == "blue hair, orange outfit, scarf, forest, flat, standing"
    assert first.caption == "zkx_mira, forest, flat, standing"  # the trigger, then what varies
    assert first.plain_prompt == first.prompt
    assert len({c.seed for c in grid}) == len(grid)
    assert variation_grid(SHEET, GROUPS, "zkx_mira", count=1) == [c for c in grid if c.number == 0]


def test_the_sheets_own_lists_win_and_an_empty_list_turns_an_axis_off():
    sheet = CharacterSheet(
        description="x", contexts=["spaceship"], poses=[], expressions=["smiling", "angry"], outfits=["Red Coat"]
    )
    grid = variation_grid(sheet, GROUPS, "zkx_mira")
    assert [c.caption for c in grid] == [
        "zkx_mira, spaceship, flat, smiling, Red Coat",
        "zkx_mira, spaceship, flat, angry, Red Coat",
        "zkx_mira, spaceship, watercolor, smiling, Red Coat",
        "zkx_mira, spaceship, watercolor, angry, Red Coat",
    ]
    # plural group names work too
    assert len(variation_grid(CharacterSheet(description="x"), {"contexts": ["a", "b", "c"]}, "t")) == 3


def test_seeds_are_stable_when_an_axis_grows():
    small = variation_grid(SHEET, GROUPS, "zkx_mira")
    big = variation_grid(SHEET, {**GROUPS, "context": ["forest", "bar", "beach"]}, "zkx_mira")
    seeds = {(c.values, c.number): c.seed for c in big}
    assert all(seeds[(c.values, c.number)] == c.seed for c in small)
    shifted = variation_grid(SHEET.model_copy(), GROUPS, "zkx_mira", seed=5)
    assert [c.seed for c in shifted] != [c.seed for c in small]


def test_with_a_lora_the_trigger_leads_the_prompt_and_gap_pairs_are_zipped():
    grid = variation_grid(SHEET, GROUPS, "zkx_mira", lora=True, pairs=[("bar", "watercolor")], count=1)
    assert [c.prompt for c in grid] == ["zkx_mira, bar, watercolor, standing", "zkx_mira, bar, watercolor, waving"]
    assert grid[0].plain_prompt == "bar, watercolor, standing"
    edit = variation_grid(SHEET, GROUPS, "zkx_mira", helper="edit", refs=["refs/a.png"], count=1)
    assert edit[0].prompt == "the same character, forest, flat, standing" and edit[0].reference == "refs/a.png"


def test_controlnet_draws_library_poses_and_refs_are_spread_over_candidates():
    grid = variation_grid(SHEET, {"context": ["forest"]}, "zkx_mira", helper="controlnet", count=1)
    assert [c.pose for c in grid][:3] == ["standing", "walking", "running"]  # no pose axis: the whole library
    assert "three-quarter view" in {c.pose for c in grid}
    named = variation_grid(SHEET, {"pose": ["Arms_Up", "side view"]}, "t", helper="controlnet", count=1)
    assert [c.pose for c in named] == ["arms up", "side view"]
    with pytest.raises(ConfigError, match="no skeleton for 'cartwheel'"):
        variation_grid(SHEET, {"pose": ["cartwheel"]}, "t", helper="controlnet")
    refs = ["refs/a.png", "refs/b.png"]
    ip = variation_grid(SHEET, GROUPS, "t", helper="ip-adapter", refs=refs)
    assert {c.reference for c in ip} == set(refs)
    assert all(c.reference == refs[c.seed % 2] for c in ip)


def test_what_a_sheet_lacks_is_said():
    with pytest.raises(ConfigError, match="describe the character"):
        variation_grid(CharacterSheet(), GROUPS, "zkx_mira")
    with pytest.raises(ConfigError, match="no trigger"):
        variation_grid(SHEET, GROUPS, "")
    with pytest.raises(ConfigError, match="refs folder has none"):
        variation_grid(SHEET, GROUPS, "t", helper="ip-adapter")
    assert variation_grid(CharacterSheet(), GROUPS, "t", lora=True, count=1)  # a LoRA needs no description


def test_the_sheet_in_lorawb_toml_is_validated_with_file_and_line(tmp_path):
    from lorawb.core.project import init_project

    root = init_project(tmp_path / "p", trigger="zkx_mira").root
    text = (root / "lorawb.toml").read_text()
    (root / "lorawb.toml").write_text(text + '\n[generate]\ndescription = "x"\nwith = "controlnet"\ncount = 3\n')
    sheet = Project.load(root).config.generate
    assert isinstance(sheet, GenerateSection) and (sheet.helper, sheet.count) == ("controlnet", 3)
    (root / "lorawb.toml").write_text(text + '\n[generate]\ndescription = "x"\ncontexts = ["a, b"]\n')
    with pytest.raises(ConfigError, match=r"generate.contexts: 'a, b': one value per entry") as err:
        Project.load(root)
    assert err.value.line == text.count("\n") + 4
    (root / "lorawb.toml").write_text(text + "\n[generate]\nconut = 3\n")
    with pytest.raises(ConfigError, match="generate.conut: unknown key") as err:
        Project.load(root)
    assert "count" in (err.value.hint or "")
