"""One concept, one place: every caption write reaches the index (the watcher off, nothing else would
tell it), the app's rename-trigger keeps lorawb.toml in step as the CLI's does (by the one tag
identity), and tabs reach the app only through its typed interface."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Input, Select

from lorawb.core.project import Project
from lorawb.toyworld.sample import make_sample_project
from lorawb.tui.app import LorawbApp
from lorawb.tui.widgets.caption_modals import BulkScreen
from lorawb.tui.workbench import Workbench
from tests.tui.conftest import settle
from tests.tui.test_tagger import preview_inbox_replace

TUI = Path(__file__).resolve().parents[2] / "lorawb" / "tui"


@pytest.fixture
def sample(tmp_path) -> Project:
    root = make_sample_project(tmp_path / "sample_project", write_toml=True)
    text = (root / "lorawb.toml").read_text().replace('images = "auto"', 'images = "auto"\nwatch = "off"')
    (root / "lorawb.toml").write_text(text)
    return Project.load(root)


async def test_auto_tag_writes_reach_the_index_with_the_watcher_off(sample: Project):
    app = LorawbApp(sample)
    async with app.run_test(size=(100, 32)) as pilot:
        await preview_inbox_replace(pilot)
        assert app.watcher is None  # [ui] watch = "off": only the writer itself can tell the index
        await pilot.press("ctrl+s")
        await settle(pilot)
        written = (sample.inbox_dir / "cand_03.txt").read_text()
        assert written == "zkx_mira, red hair, forest, outlined, arms up\n"
        assert app.index.snapshot().facts["inbox/cand_03.png"].caption_text == written
        app.select_image("inbox/cand_03.png")
        await pilot.press("2")
        await settle(pilot)
        assert app.query_one("CaptionEditor").text == written.strip()  # Captions reads the index


async def test_the_apps_rename_trigger_keeps_lorawb_toml_in_step(sample: Project):
    app = LorawbApp(sample)
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BulkScreen)
        screen.query_one("#bulk-op", Select).value = "rename-trigger"
        await pilot.pause()
        screen.query_one("#bulk-a", Input).value = "zkx mira"  # the one tag identity: the same as zkx_mira
        screen.query_one("#bulk-b", Input).value = "zkx_nova"
        await pilot.press("f5")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert Project.load(sample.root).trigger == "zkx_nova"
        assert sample.trigger == "zkx_nova" and "zkx_nova" in str(app.sub_title)
        assert (sample.dataset_dir / "10_zkx_mira" / "mira_01_forest.txt").read_text().startswith("zkx_nova, ")


def test_the_clis_rename_trigger_compares_triggers_by_the_one_tag_identity(sample: Project):
    out = subprocess.run(
        [sys.executable, "-m", "lorawb", "captions", str(sample.root), "rename-trigger", "zkx mira", "zkx_nova"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert Project.load(sample.root).trigger == "zkx_nova"
    assert "trigger = 'zkx_nova' (was 'zkx_mira')" in out.stdout + out.stderr


async def test_tabs_use_the_app_through_its_typed_interface(sample: Project):
    app = LorawbApp(sample)
    async with app.run_test(size=(80, 24)):
        assert isinstance(app, Workbench)
    reaching = [
        f"{p.relative_to(TUI)}:{n}"
        for p in sorted(TUI.rglob("*.py"))
        if p.name not in ("app.py", "workbench.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"(get|has)attr\((self|widget)\.app\b|self\.app\.(index|author|current_image|image_list|"
                     r"dataset_version|dataset_changed|select_image|action_show_tab|project)\b", line)
    ]  # fmt: skip
    assert reaching == []
