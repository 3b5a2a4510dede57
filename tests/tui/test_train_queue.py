"""The Train tab's Queue view, driven with the Pilot: it lists the machine's queue and its keys
reorder, pause and cancel (the queue file changes; no job starts: nothing wakes the runner)."""

from __future__ import annotations

from textual.widgets import DataTable, Static, TabbedContent

from lorawb.queue import enqueue, store
from lorawb.tui.app import LorawbApp
from tests.tui.test_train_tab import wait_for


def queued_titles(qdir) -> list[str]:
    return [j.title for j in store.load(qdir).pending]


async def test_the_queue_view_reorders_pauses_and_cancels(sample_like_project, tmp_path, monkeypatch):
    monkeypatch.setenv("LORAWB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    qdir = tmp_path / "state" / "queue"
    project = sample_like_project
    for name in ("alpha", "beta", "gamma"):
        folder = project.matrices_dir / name
        folder.mkdir(parents=True)
        enqueue(project, "matrix", f"matrix {name}", folder=folder, start=False)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # mounted (a key pressed before may find no focus)
        await pilot.press("3")
        await pilot.pause()  # the Train tab has focus before its keys (Triage has an `s` too)
        await pilot.press("q")
        assert app.query_one("#train-views", TabbedContent).active == "tv-queue"
        table = app.query_one("#queue-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        assert [str(c) for c in table.get_row("1")[:3]] == ["1", "1", "queued"]
        assert "3 waiting · 0 running · runner off" in str(app.query_one("#queue-head", Static).render())
        assert app.focused is table

        await pilot.press("J")  # alpha one down
        await wait_for(pilot, lambda: queued_titles(qdir) == ["matrix beta", "matrix alpha", "matrix gamma"])
        await wait_for(pilot, lambda: str(table.get_row("1")[1]) == "2")
        assert table.cursor_row == 1  # the cursor went with the job
        await pilot.press("K")
        await wait_for(pilot, lambda: queued_titles(qdir)[0] == "matrix alpha")

        await pilot.press("P")
        await wait_for(pilot, lambda: store.load(qdir).paused)
        await wait_for(pilot, lambda: "PAUSED" in str(app.query_one("#queue-head", Static).render()))

        await pilot.press("down", "down", "x")  # armed: nothing yet
        await pilot.pause(0.2)
        assert store.load(qdir).get("3").state == "queued"
        await pilot.press("x")
        await wait_for(pilot, lambda: store.load(qdir).get("3").state == "cancelled")
        await wait_for(pilot, lambda: table.row_count == 2)  # ended jobs leave the view
