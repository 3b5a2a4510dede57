"""The Triage tab driven by keyboard: grid walking, decisions that move files, filters, dupes view, inbox,
and the event loop never decoding an image."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from PIL import Image, ImageFile
from textual import events

from lorawb.core import thumbs as thumbs_mod
from lorawb.core.triage import Triage
from lorawb.tui.app import LorawbApp
from lorawb.tui.tabs.triage import Ask, TriageTab
from lorawb.tui.widgets import image_grid, image_view
from lorawb.tui.widgets.image_grid import ImageGrid
from lorawb.tui.widgets.image_view import ImageView
from tests.core.triage_fixtures import save, scene, shifted
from tests.tui.conftest import build_project, settle

F = "dataset/10_zkx_mira"


def parts(app):
    tab = app.query_one(TriageTab)
    return tab, tab.query_one(ImageGrid)


def status(app) -> str:
    return str(app.query_one("#triage-status").render())


def facts(app) -> str:
    return str(app.query_one("#triage-facts").render())


async def test_walk_the_grid_by_keyboard(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        tab, grid = parts(app)
        assert app.focused is grid
        assert app.image_list == tuple(f"{F}/img_{i:03d}.png" for i in range(12))
        cols = grid.columns
        assert cols >= 3
        await pilot.press("right")
        assert app.current_image == f"{F}/img_001.png"
        await pilot.press("down")
        assert app.current_image == f"{F}/img_{1 + cols:03d}.png"
        await pilot.press("h", "k", "l", "j", "j")
        assert grid.cursor == 1 + 2 * cols
        await pilot.press("end")
        assert app.current_image == f"{F}/img_011.png"
        await pilot.press("home")
        assert app.current_image == f"{F}/img_000.png"
        await settle(pilot)
        # The preview and the facts follow the cursor.
        assert app.query_one("#triage-preview", ImageView).path == sample_like_project.root / F / "img_000.png"
        text = facts(app)
        assert "img_000.png" in text and "96×96 RGB PNG" in text and "bucket 512x512 (1:1)" in text
        assert "zkx_mira, red outfit, forest" in text
        assert "12 shown" in status(app)


async def test_grid_cells_are_half_blocks_and_only_visible_ones_are_made(tmp_path):
    project = build_project(tmp_path / "proj", n=60)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        _, grid = parts(app)
        line = grid.render_line(1)
        assert "▀" in line.text
        assert any(seg.style and seg.style.bgcolor for seg in line)  # coloured: two pixels per cell
        # 60 images, a few rows on screen: thumbnails were made for the screen and one page ahead only.
        made = grid.stats["thumbs_made"]
        assert 0 < made < 40
        assert len(list((project.root / ".lorawb" / "thumbs").rglob("*.png"))) >= made
        await pilot.press("end")
        await settle(pilot)
        assert grid.painted.is_set()
        assert app.current_image == f"{F}/img_059.png"


async def test_reject_moves_the_image_and_caption_and_unreject_brings_them_back(sample_like_project):
    root = sample_like_project.root
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("1", "right", "x")
        await settle(pilot)
        assert (root / "dataset/rejected/10_zkx_mira/img_001.png").exists()
        assert (root / "dataset/rejected/10_zkx_mira/img_001.txt").exists()
        assert not (root / F / "img_001.png").exists() and not (root / F / "img_001.txt").exists()
        assert f"{F}/img_001.png" not in app.image_list and len(app.image_list) == 11
        assert app.current_image == f"{F}/img_002.png"  # moved on to the next image
        assert "✗1" in status(app)
        # The rejected view shows it; u moves it back with its caption.
        await pilot.press("v", "v", "v", "v")
        await settle(pilot)
        assert "rejected" in status(app)
        assert app.image_list == ("dataset/rejected/10_zkx_mira/img_001.png",)
        await pilot.press("u")
        await settle(pilot)
        assert (root / F / "img_001.png").exists() and (root / F / "img_001.txt").exists()
        assert not (root / "dataset/rejected/10_zkx_mira/img_001.png").exists()
        assert app.image_list == ()


async def test_keep_flag_clear_and_undo_are_recorded(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("1", "y", "f", "x")  # keep 000, flag 001, reject 002
        await settle(pilot)
        states = {i.rel: i.state for i in Triage(sample_like_project).items()}
        assert states[f"{F}/img_000.png"] == "keep"
        assert states[f"{F}/img_001.png"] == "flag"
        assert states["dataset/rejected/10_zkx_mira/img_002.png"] == "reject"
        _, grid = parts(app)
        assert [it.state for it in grid.items[:2]] == ["keep", "flag"]
        await pilot.press("backspace")  # undo the reject
        await settle(pilot)
        assert (sample_like_project.root / F / "img_002.png").exists()
        assert app.current_image == f"{F}/img_002.png"
        await pilot.press("home", "u")  # clear the keep
        await settle(pilot)
        assert Triage(sample_like_project).state_of(f"{F}/img_000.png") == "unreviewed"
        # The "kept" view is now empty, the "flagged" one has one image.
        await pilot.press("v", "v")
        await settle(pilot)
        assert app.image_list == ()
        await pilot.press("v")
        await settle(pilot)
        assert app.image_list == (f"{F}/img_001.png",)


async def test_filters_by_key_and_prompt(sample_like_project):
    root = sample_like_project.root
    (root / F / "img_003.txt").unlink()
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("1", "c")
        await settle(pilot)
        assert app.image_list == (f"{F}/img_003.png",)
        await pilot.press("c", "t")
        await pilot.pause()
        assert isinstance(app.screen, Ask)
        await pilot.press(*"beach", "enter")
        await settle(pilot)
        assert app.image_list == tuple(f"{F}/img_{i:03d}.png" for i in (7, 11))  # 3 is beach but uncaptioned
        assert "+beach" in status(app)
        await pilot.press("T", *"photo", "enter")
        await settle(pilot)
        assert app.image_list == (f"{F}/img_007.png",)  # 11 is a photo
        await pilot.press("escape")
        await settle(pilot)
        assert len(app.image_list) == 12
        await pilot.press("r")  # every fixture image is 96 px: all low-res
        await settle(pilot)
        assert len(app.image_list) == 12 and "low-res" in status(app)
        await pilot.press("escape", "S")  # reverse the name sort
        await settle(pilot)
        assert app.image_list[0] == f"{F}/img_011.png"
        await pilot.press("s")  # sort by time
        await settle(pilot)
        assert "time" in status(app)


async def test_near_duplicate_view_keeps_one_and_rejects_the_rest(tmp_path):
    project = build_project(tmp_path / "proj", n=0)
    d = project.dataset_dir / "10_zkx_mira"
    base = scene(100, (320, 240))
    save(base, d / "a_orig.png", "zkx_mira, forest")
    save(shifted(base, 2, 1), d / "b_shift.png", "zkx_mira, forest")
    base.save(d / "c_jpeg.jpg", quality=35)
    save(scene(500, (320, 240)), d / "solo.png", "zkx_mira, bar")
    app = LorawbApp(project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("1", "D")
        await settle(pilot)
        tab, grid = parts(app)
        assert tab.dupe_view and "dup group 1/1" in status(app)
        assert set(app.image_list) == {f"{F}/a_orig.png", f"{F}/b_shift.png", f"{F}/c_jpeg.jpg"}
        assert "near-duplicate" in facts(app)
        await pilot.press("y")  # keep the first (the suggested keeper), reject the others
        await settle(pilot)
        keeper = next(i for i in Triage(project).items() if i.state == "keep")
        rejected = sorted(p.name for p in (project.dataset_dir / "rejected" / "10_zkx_mira").glob("*.*"))
        assert keeper.rel in (f"{F}/a_orig.png", f"{F}/b_shift.png")
        assert len([n for n in rejected if not n.endswith(".txt")]) == 2
        assert (project.root / keeper.rel).exists() and (project.root / F / "solo.png").exists()
        assert "dup group 0/0" in status(app) and app.image_list == ()
        await pilot.press("D")  # back to the grid
        await settle(pilot)
        assert set(app.image_list) == {keeper.rel, f"{F}/solo.png"}


async def test_inbox_keep_asks_for_a_folder_and_moves_the_image(sample_like_project):
    root = sample_like_project.root
    save(scene(42), sample_like_project.inbox_dir / "cell_r1c2.png", "zkx_mira, spaceship, photo")
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("1", "i")
        await settle(pilot)
        assert app.image_list == ("inbox/cell_r1c2.png",) and "inbox" in status(app)
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, Ask)
        inp = app.screen.query_one("#ask-input")
        inp.value = ""
        await pilot.press(*"3_from_matrix", "enter")
        await settle(pilot)
        assert (root / "dataset/3_from_matrix/cell_r1c2.png").exists()
        assert (root / "dataset/3_from_matrix/cell_r1c2.txt").read_text() == "zkx_mira, spaceship, photo"
        assert app.image_list == ()
        await pilot.press("i")
        await settle(pilot)
        assert "dataset/3_from_matrix/cell_r1c2.png" in app.image_list


async def test_i_cycles_dataset_inbox_and_reg(sample_like_project):
    save(scene(42), sample_like_project.inbox_dir / "cell.png", "zkx_mira, photo")
    save(scene(43), sample_like_project.root / "reg" / "1_woman" / "r0.png")
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("1", "i")
        await settle(pilot)
        assert app.image_list == ("inbox/cell.png",)
        await pilot.press("i")
        await settle(pilot)
        assert app.image_list == ("reg/1_woman/r0.png",) and status(app).startswith("reg")
        assert "×1" in facts(app)
        await pilot.press("i")
        await settle(pilot)
        assert app.image_list[0].startswith("dataset/")


async def test_captions_tab_selection_moves_the_grid_cursor(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.select_image(f"{F}/img_005.png")
        await pilot.pause()
        _, grid = parts(app)
        assert grid.cursor == 5


async def test_works_at_80x24(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        tab, grid = parts(app)
        assert grid.size.width >= 28 and grid.size.height >= 12
        assert tab.query_one("#triage-preview").size.height >= 5
        assert app.query_one("#triage-status").size.height == 1
        await pilot.press("x")
        await settle(pilot)
        assert len(app.image_list) == 11


# --------------------------------------------------------------------------- responsiveness


@pytest.fixture
def decode_threads(monkeypatch):
    """Record the thread of every pixel decode (ImageFile.load) and every Image.open."""
    seen: list[tuple[str, bool]] = []
    real_load, real_open = ImageFile.ImageFile.load, Image.open

    def load(self, *a, **kw):
        seen.append(("load", threading.current_thread() is threading.main_thread()))
        return real_load(self, *a, **kw)

    def open_(*a, **kw):
        seen.append(("open", threading.current_thread() is threading.main_thread()))
        return real_open(*a, **kw)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    monkeypatch.setattr(Image, "open", open_)
    return seen


async def test_no_image_is_opened_or_decoded_on_the_event_loop(tmp_path, decode_threads):
    project = build_project(tmp_path / "proj", n=30)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("1", "right", "down", "pagedown", "end", "x", "home", "D", "D", "minus", "plus", "plus")
        await settle(pilot)
        await pilot.press("ctrl+g", "ctrl+g")  # image mode changes re-render every cell
        await settle(pilot)
    assert len([s for s in decode_threads if s[0] == "load"]) > 30  # the instrument saw the work...
    assert [s for s in decode_threads if s[1]] == []  # ...and none of it on the main thread


async def test_keys_are_handled_while_thumbnails_are_still_being_made(tmp_path, monkeypatch):
    """Decoding is held back (one loader thread, blocked until the keys are done); every key is still handled.

    Keys go straight into the app's queue (the Pilot's own waits would hide a wait). A key that
    waited for a thumbnail would never be handled while decoding is held; how long a key takes is
    measured by bench/thumbs.py ("keys"), never asserted here.
    """
    project = build_project(tmp_path / "proj", n=40)
    real = thumbs_mod.make_thumbnail_png

    held = threading.Event()

    def slow(path, size):
        held.wait(30)
        return real(path, size)

    monkeypatch.setattr(thumbs_mod, "make_thumbnail_png", slow)
    monkeypatch.setattr(image_grid, "_worker_count", lambda: 1)
    app = LorawbApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        _, grid = parts(app)
        t0 = time.monotonic()
        while len(grid.items) < 40 or not grid.scrollable_content_region.height or not grid.has_focus:  # ready for keys
            await asyncio.sleep(0.01)
            assert time.monotonic() - t0 < 30, "the grid never filled"
        await pilot.pause()
        cols = grid.columns
        page = max(1, grid.scrollable_content_region.height // grid.cell_size[1]) * cols
        plan = [
            ("right", 1),
            ("right", 2),
            ("down", 2 + cols),
            ("pagedown", 2 + cols + page),
            ("left", 1 + cols + page),
        ]
        plan += [("down", 1 + 2 * cols + page), ("home", 0), ("end", 39), ("up", 39 - cols)]
        for key, expected in plan:
            t0 = time.monotonic()
            app.post_message(events.Key(key, None))
            while grid.cursor != expected:
                await asyncio.sleep(0.002)
                assert time.monotonic() - t0 < 30, f"{key} not handled"
        busy = not grid.painted.is_set()
        made_so_far = grid.stats["thumbs_made"]
        held.set()
        await settle(pilot)
        assert app.current_image == f"{F}/img_{39 - cols:03d}.png"
        assert grid.painted.is_set()
    # Every key was handled while not one thumbnail could be made: none waited for decoding.
    assert busy and made_so_far == 0


async def test_palette_commands_and_unicode_grid_mode(sample_like_project):
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {
            "Triage: reject (x)",
            "Triage: show flagged (v)",
            "Triage: sort by aspect (s)",
            "Triage: near-duplicate groups (D)",
        } <= set(titles)
        await pilot.press("ctrl+p")
        await pilot.press(*"Triage: reject")
        await pilot.press("enter")
        await settle(pilot)
        assert (sample_like_project.root / "dataset/rejected/10_zkx_mira/img_000.png").exists()
        # In "unicode" image mode the grid draws shade characters instead of half-blocks.
        _, grid = parts(app)
        assert "▀" in grid.render_line(1).text
        app.image_mode = "unicode"
        await settle(pilot)
        line = grid.render_line(1).text
        assert "▀" not in line and set(line) & set("█▓▒░")


async def test_bucket_fact_follows_the_trainer_settings_and_never_crashes(sample_like_project):
    sample_like_project.save_setting("project.resolution", 32)  # a tiny toy model
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "no bucket: dataset.resolution 32 < dataset.bucket_step 64" in facts(app)
    sample_like_project.save_setting("dataset.bucket_step", 8)
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "bucket 32x32 (1:1) @32" in facts(app)
    sample_like_project.save_setting("dataset.bucket_step", "eight")  # the trainer refuses it: so does the fact
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "bucket unknown: dataset.bucket_step" in facts(app)


async def test_held_arrow_key_draws_only_the_preview_it_stops_on(sample_like_project, monkeypatch):
    """Key repeat through the grid: the cursor moves at once, the preview is decoded for where it stops,
    and the hidden Captions tab does not open each caption on the way (issue 17: 100 moves stay instant)."""
    loads: list[tuple[str | None, str]] = []
    real = ImageView._load

    def counting(self, path):
        loads.append((self.id, path.name))
        return real(self, path)

    monkeypatch.setattr(ImageView, "_load", counting)
    monkeypatch.setattr(image_view, "RAPID_S", 30.0)  # a loaded test machine must not make the keys look slow
    app = LorawbApp(sample_like_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        _, grid = parts(app)
        loads.clear()
        for want in range(1, 6):
            app.post_message(events.Key("right", None))
            while grid.cursor != want:
                await asyncio.sleep(0.002)
        for _ in range(200):  # the preview is drawn once the keys pause (a timer: late on a loaded machine)
            if ("triage-preview", "img_005.png") in loads:
                break
            await asyncio.sleep(0.05)
        await settle(pilot)
        triage = [name for wid, name in loads if wid == "triage-preview"]
        assert triage[-1] == "img_005.png" and len(triage) <= 2, triage  # the first move, and where it stopped
        assert [name for wid, name in loads if wid == "captions-preview"] == []
        await pilot.press("2")  # shown: the Captions tab opens the selected image
        await settle(pilot)
        assert ("captions-preview", "img_005.png") in loads
