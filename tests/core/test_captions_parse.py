"""Parsing and serializing one caption: tags, weights, sentences, the trigger."""

from __future__ import annotations

import pytest

from lorawb.core.captions import (
    Caption,
    leads_with_trigger,
    rename_tag,
    split_tags,
    tag_key,
    tag_name,
    trigger_index,
)


@pytest.mark.parametrize(
    ("body", "tags"),
    [
        ("zkx_mira, 1girl, red scarf", ["zkx_mira", "1girl", "red scarf"]),
        ("a,b ,  c", ["a", "b", "c"]),
        ("a,,b,", ["a", "", "b", ""]),
        ("(red scarf:1.2), forest", ["(red scarf:1.2)", "forest"]),
        ("(red scarf, blue hat:1.2), forest", ["(red scarf, blue hat:1.2)", "forest"]),
        ("[a, b], {c, d}, e", ["[a, b]", "{c, d}", "e"]),
        (r"mira \(artist\), x\,y, z", [r"mira \(artist\)", r"x\,y", "z"]),
        ("a woman standing in a forest", ["a woman standing in a forest"]),
        ("", []),
        ("   ", []),
    ],
)
def test_split_tags(body, tags):
    assert split_tags(body) == tags


@pytest.mark.parametrize(
    ("tag", "name", "key"),
    [
        ("red scarf", "red scarf", "red scarf"),
        ("(red scarf:1.2)", "red scarf", "red scarf"),
        ("( Red  Scarf : 0.8 )", "Red  Scarf", "red scarf"),
        ("((red scarf))", "red scarf", "red scarf"),
        ("[red scarf]", "red scarf", "red scarf"),
        ("{red scarf}", "red scarf", "red scarf"),
        ("((red scarf:1.1))", "red scarf", "red scarf"),
        ("(red scarf:.5)", "red scarf", "red scarf"),
        ("Red\tScarf", "Red\tScarf", "red scarf"),
        (r"mira \(artist\)", r"mira \(artist\)", r"mira \(artist\)"),
        ("(a) (b)", "(a) (b)", "(a) (b)"),  # not one bracketed tag: left alone
        ("", "", ""),
    ],
)
def test_tag_name_and_key(tag, name, key):
    assert tag_name(tag) == name
    assert tag_key(tag) == key


def test_rename_keeps_weight_and_brackets():
    assert rename_tag("(red scarf:1.2)", "blue scarf") == "(blue scarf:1.2)"
    assert rename_tag("((red scarf))", "blue scarf") == "((blue scarf))"
    assert rename_tag("red scarf", "blue scarf") == "blue scarf"


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("zkx_mira, forest\n", "zkx_mira, forest\n"),
        ("  zkx_mira,forest", "  zkx_mira, forest"),
        ("zkx_mira , (red scarf:1.2)\n\n", "zkx_mira, (red scarf:1.2)\n\n"),
        ("a sentence only", "a sentence only"),
        ("", ""),
        ("\n", "\n"),
    ],
)
def test_rewrite_keeps_whitespace_around_and_tags_as_written(text, written):
    cap = Caption.parse(text)
    assert cap.with_tags(list(cap.tags)).text() == written


def test_trigger_in_tags_and_sentences():
    assert trigger_index(Caption.parse("zkx_mira, forest"), "zkx_mira") == 0
    assert trigger_index(Caption.parse("forest, ZKX_Mira"), "zkx_mira") == 1
    assert trigger_index(Caption.parse("zkx_mira standing in a forest"), "zkx_mira") == 0
    assert trigger_index(Caption.parse("zkx_mirabel, forest"), "zkx_mira") is None
    assert trigger_index(Caption.parse("a photo of zkx_mira"), "zkx_mira") is None
    assert leads_with_trigger(Caption.parse("(zkx_mira:1.1), forest"), "zkx_mira")
    assert not leads_with_trigger(Caption.parse(""), "zkx_mira")


def test_sentence_caption():
    cap = Caption.parse("zkx_mira walking through a dark forest at night")
    assert cap.is_sentence and len(cap.tags) == 1
    assert not Caption.parse("zkx_mira, forest").is_sentence
