"""What a person sees at 80x24, pinned as SVG snapshots (update with --snapshot-update)."""

from __future__ import annotations

import os

from lorawb.tui.app import LorawbApp
from tests.tui.conftest import build_project, settle


def test_matrix_tab_empty_80x24(snap_compare, tmp_path):
    project = build_project(tmp_path / "snap")
    os.utime(project.root, ns=(0, 0))

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)

    assert snap_compare(LorawbApp(project), terminal_size=(80, 24), run_before=run_before)
