"""Several characters in the app: the header's counts per character and pair, Triage's character filter, the
Captions tag table's column per character and pair, and the composition's character rows with the pair as a row
(the two-character project of tests/core/two_characters.py). Pilot tests, then 80x24 snapshots."""

from __future__ import annotations

import re

import pytest
from textual.widgets import DataTable, Static

from lorawb.core.project import Project
from lorawb.tui.app import LorawbApp
from lorawb.tui.tabs.captions import CaptionsTab
from lorawb.tui.tabs.triage import Ask, TriageTab
from tests.core.two_characters import build
from tests.tui.conftest import freeze, make_image, settle
from tests.tui.test_snapshots_screens import SIZE, keys

CONTEXT = re.compile(r"\b(forest|bar|beach)\b")


def two_characters(root) -> Project:
    """The two-character project with pictures (a figure in its context's colour) and fixed times."""
    project = build(root)
    for i, png in enumerate(sorted(project.dataset_dir.rglob("*.png"))):
        m = CONTEXT.search(png.with_suffix(".txt").read_text(encoding="utf-8"))
        make_image(png, m.group(1) if m else "beach", i)
    freeze(project.root)
    return Project.load(project.root)


@pytest.fixture
def two(tmp_path) -> Project:
    return two_characters(tmp_path / "two")


async def test_triage_character_filter_and_the_header(two):
    app = LorawbApp(two, images="halfcell")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        tab = app.query_one(TriageTab)
        assert "mira 10 · tom 4 · mira+tom 4" in app.sub_title
        assert len(tab.shown) == 19
        await pilot.press("C")
        await settle(pilot)
        assert isinstance(app.screen, Ask)
        await pilot.press(*"tom", "enter")
        await settle(pilot)
        assert tab.flt.character == "tom"
        assert len(tab.shown) == 8  # alone (4) and with mira (4)
        assert "character:tom" in str(app.query_one("#triage-status", Static).render())
        await pilot.press("C", "ctrl+u", *"joint", "enter")
        await settle(pilot)
        assert [i.name for i in tab.shown] == ["j00.png", "j01.png", "j02.png", "x00.png"]
        await pilot.press("C", "ctrl+u", *"bob", "enter")  # refused, named: the filter stays
        await settle(pilot)
        assert tab.flt.character == "joint"
        await pilot.press("escape")
        await settle(pilot)
        assert tab.flt.character is None and len(tab.shown) == 19
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Triage: character mira+tom (C)" in titles and "Triage: joint images (C)" in titles


async def test_composition_has_character_rows_and_the_pair_row_and_tag_columns(two):
    app = LorawbApp(two, images="halfcell")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        tab = app.query_one(CaptionsTab)
        await pilot.press("c")
        await settle(pilot)
        table = app.query_one("#captions-comp-table", DataTable)
        assert [str(c.label) for c in table.columns.values()] == [
            "character\\context",
            "forest",
            "bar",
            "beach",
            "all",
            "cells/6",
        ]
        assert [str(c) for c in table.get_row_at(1)] == ["tom", "4", "0 !", "0 !", "4", "2"]
        assert [str(c) for c in table.get_row_at(2)] == ["mira+tom", "1 ?", "2", "1 ?", "4", "4"]
        table.move_cursor(row=2, column=2)  # the pair in the bar
        await pilot.press("enter")
        await settle(pilot)
        assert tab.filter.label == "mira+tom × bar"
        assert tab.shown == ["dataset/5_zkx_mira+qvr_tom/j00.png", "dataset/misc/x00.png"]
        await pilot.press("t")
        await settle(pilot)
        tags = app.query_one("#captions-tag-table", DataTable)
        assert [str(c.label) for c in tags.columns.values()] == ["count", "w/trig", "mira", "tom", "mira+tom", "tag"]
        await pilot.press("slash", *"char:tom", "enter")
        await settle(pilot)
        assert len(tab.shown) == 8
        assert "2 not led by their triggers" in str(app.query_one("#captions-tags-head", Static).render())


# --- 80x24 snapshots ------------------------------------------------------------------------------------


def test_triage_character_filter_80x24(snap_compare, two):
    assert snap_compare(
        LorawbApp(two, images="halfcell"), terminal_size=SIZE, run_before=keys("C", "t", "o", "m", "enter")
    )


def test_captions_composition_characters_80x24(snap_compare, two):
    assert snap_compare(LorawbApp(two, images="halfcell"), terminal_size=SIZE, run_before=keys("2", "c"))


def test_captions_tags_per_character_80x24(snap_compare, two):
    assert snap_compare(LorawbApp(two, images="halfcell"), terminal_size=SIZE, run_before=keys("2", "t"))


async def test_bulk_edits_per_character_and_a_trigger_rename_in_the_app(two):
    app = LorawbApp(two, images="halfcell")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        tab = app.query_one(CaptionsTab)
        await pilot.press("slash", *"char:tom", "enter")  # the bulk edit acts on tom's images only
        await settle(pilot)
        tab.action_bulk("add", a="smile")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        text = {p.name: p.read_text(encoding="utf-8") for p in two.dataset_dir.rglob("*.txt")}
        assert [n for n, t in sorted(text.items()) if "smile" in t] == [
            "j00.txt", "j01.txt", "j02.txt", "t00.txt", "t01.txt", "t02.txt", "t03.txt", "x00.txt",
        ]  # fmt: skip
        await pilot.press("escape")
        await settle(pilot)
        tab.action_bulk("rename-trigger", a="qvr_tom", b="vxq_tom", run_preview=True)
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        toml = (two.root / "lorawb.toml").read_text(encoding="utf-8")
        assert 'trigger = "vxq_tom"' in toml and '"10_qvr_tom"' in toml
        assert "mira 10 · tom 4 · mira+tom 4" in app.sub_title  # tom keeps his images through his folders
