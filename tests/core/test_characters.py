"""Characters in lorawb.toml: a one-character project as before, several under [characters]."""

from __future__ import annotations

import pytest

from lorawb.core.characters import characters_in, characters_of, folder_concepts, lead_triggers
from lorawb.core.project import Project, init_project
from lorawb.errors import ConfigError

TWO = """
[characters]
balance = "by_images"

[characters.mira]
trigger = "zkx_mira"
invariant = ["short blue hair", "orange jumpsuit"]
folders = ["10_zkx_mira"]

[characters.tom]
trigger = "qvr_tom"
invariant = ["red cap"]
"""


def project(tmp_path, extra: str = "") -> Project:
    root = tmp_path / "p"
    init_project(root, trigger="zkx_mira")
    with (root / "lorawb.toml").open("a", encoding="utf-8") as f:
        f.write(extra)
    return Project.load(root)


def test_a_one_character_project_has_its_trigger_as_its_one_character(tmp_path):
    p = project(tmp_path)
    chars = characters_of(p.config)
    assert [(c.trigger, c.folders) for c in chars] == [("zkx_mira", ())]
    assert p.config.characters.members == {}


def test_characters_are_read_in_order_with_their_settings(tmp_path):
    p = project(tmp_path, TWO)
    chars = characters_of(p.config)
    assert [(c.name, c.trigger) for c in chars] == [("mira", "zkx_mira"), ("tom", "qvr_tom")]
    assert chars[0].invariant == ("short blue hair", "orange jumpsuit")
    assert p.config.characters.balance == "by_images"


def test_which_characters_an_image_holds(tmp_path):
    chars = characters_of(project(tmp_path, TWO).config)
    assert folder_concepts("5_zkx_mira+qvr_tom") == ["zkx_mira", "qvr_tom"]
    assert characters_in("10_zkx_mira", ["forest"], chars) == ["mira"]
    assert characters_in("5_zkx_mira+qvr_tom", [], chars) == ["mira", "tom"]
    assert characters_in("misc", ["qvr tom", "Zkx_Mira", "forest"], chars) == ["mira", "tom"]  # one tag identity
    assert characters_in("misc", ["forest"], chars) == []
    assert lead_triggers(["forest", "qvr_tom", "photo", "zkx_mira"], chars) == [
        "zkx_mira",
        "qvr_tom",
        "forest",
        "photo",
    ]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('\n[characters.mira]\ninvariant = ["x"]\n', "characters.mira"),
        ('\n[characters]\nbalance = "fair"\n', "balance"),
        ('\n[characters.a]\ntrigger = "zkx"\n[characters.b]\ntrigger = "ZKX"\n', "already"),
        ('\n[characters]\nmira = "zkx_mira"\n', "characters.mira"),
    ],
)
def test_bad_character_tables_are_named(tmp_path, extra, words):
    with pytest.raises(ConfigError) as info:
        project(tmp_path, extra)
    assert words in str(info.value) and "lorawb.toml" in str(info.value)
    assert info.value.line is not None  # the line of the key or table


def test_a_key_inside_a_character_is_named_as_lorawb_toml_spells_it(tmp_path):
    with pytest.raises(ConfigError) as info:
        project(tmp_path, '\n[characters.tom]\ntrigger = "qvr_tom"\ncolour = "red"\n')
    assert str(info.value).count("characters.tom.colour") == 1 and "members" not in str(info.value)
    text = (tmp_path / "p" / "lorawb.toml").read_text().splitlines()
    assert text[info.value.line - 1].startswith("colour")
