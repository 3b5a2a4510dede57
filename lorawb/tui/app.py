"""The Textual app: composes the tabs and routes global bindings. Each tab owns its behaviour.

Tabs use the app only through lorawb.tui.workbench.Workbench (the typed interface this class provides).

The app also owns what the tabs share: the project's image index (lorawb.core.index) and
the file watcher (lorawb.core.watch), started with the app and stopped on exit. Changes
made by other programs reach the tabs as messages (lorawb.tui.messages).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

# textual_image probes the terminal's graphics support on import: before the app starts.
import textual_image.widget  # noqa: F401
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from lorawb.core import caption_history, journal, state
from lorawb.core.caption_writes import CaptionWrites
from lorawb.core.cast import Cast
from lorawb.core.cast import held as held_of
from lorawb.core.characters import characters_of
from lorawb.core.index import DATASET, INBOX, IndexSnapshot, ProjectIndex, project_areas
from lorawb.core.project import Project
from lorawb.core.watch import ProjectWatcher, WatchBatch
from lorawb.errors import LorawbError
from lorawb.tui.messages import (
    ConfigReloaded,
    DatasetChanged,
    FilesChanged,
    MatricesChanged,
    RunsChanged,
    StateReset,
)
from lorawb.tui.palette import command
from lorawb.tui.tabs.captions import CaptionsTab
from lorawb.tui.tabs.matrix import MatrixTab
from lorawb.tui.tabs.train import TrainTab
from lorawb.tui.tabs.triage import TriageTab
from lorawb.tui.themes import MEANING_DEFAULTS, load_themes
from lorawb.tui.widgets.image_view import IMAGE_MODES
from lorawb.tui.widgets.unsaved_modal import UnsavedScreen
from lorawb.words import plural

TABS = (
    ("triage", "Triage", TriageTab),
    ("captions", "Captions", CaptionsTab),
    ("train", "Train", TrainTab),
    ("matrix", "Matrix", MatrixTab),
)
HERE = Path(__file__).parent
HEADER_SIDES = 18  # the header's icon and clock space: its middle is the width less these


class LorawbApp(App):
    CSS_PATH = [HERE / "app.tcss", *(HERE / "tabs" / f"{key}.tcss" for key, _, _ in TABS)]
    TITLE = "lorawb"
    BINDINGS = [
        Binding("1", "show_tab('triage')", "Triage", show=False),
        Binding("2", "show_tab('captions')", "Captions", show=False),
        Binding("3", "show_tab('train')", "Train", show=False),
        Binding("4", "show_tab('matrix')", "Matrix", show=False),
        # In the palette (ctrl+p) and the README, not the footer: at 80 columns the tab's own keys need it.
        Binding("ctrl+t", "cycle_theme", "Theme", show=False),
        Binding("ctrl+g", "cycle_image_mode", "Images", show=False),
        Binding("ctrl+r", "rescan", "Rescan", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    current_image: reactive[str | None] = reactive(None, always_update=True)
    image_list: reactive[tuple[str, ...]] = reactive(tuple)
    dataset_version: reactive[int] = reactive(0)
    image_mode: reactive[str] = reactive("auto")

    def __init__(self, project: Project, *, images: str | None = None, theme: str | None = None) -> None:
        super().__init__()
        self.project = project
        self._wanted_theme = theme or project.config.ui.theme
        self._wanted_images = images or project.config.ui.images
        self.theme_problems: list[str] = []
        self.index = ProjectIndex(project)  # the one index every tab reads
        self.watcher: ProjectWatcher | None = None
        self.watch_batches = 0  # batches from the file watcher handled (for tests and benchmarks)
        # This window's author id in the caption history: its u/U undo and redo its own changes only.
        self.author = caption_history.new_window_id()

    # --- set-up ---------------------------------------------------------------
    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {**super().get_theme_variable_defaults(), **MEANING_DEFAULTS}

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs"):
            for key, label, cls in TABS:
                with TabPane(label, id=f"tab-{key}"):
                    yield cls(self.project, id=key)
        yield Static("", id="watch-status")
        yield Footer()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification is plain text: messages are built from file names, tags and lorawb.toml
        text, where `set [triage] keep_folder` must keep its brackets (never read as Rich markup)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def on_mount(self) -> None:
        themes, self.theme_problems = load_themes(self.project.root)
        for theme in themes:
            self.register_theme(theme)
        for problem in self.theme_problems:
            self.notify(problem, title="theme not loaded", severity="warning", timeout=8)
        if self._wanted_theme in self.available_themes:
            self.theme = self._wanted_theme
        elif self._wanted_theme:
            self.notify(f"unknown theme {self._wanted_theme!r}; using {self.theme}", severity="warning")
        self.image_mode = self._wanted_images if self._wanted_images in IMAGE_MODES else "auto"
        self.title = self.project.name
        self.sub_title = self._first_words()
        self.query_one("#watch-status", Static).display = False
        state.add_reset_listener(self._state_reset)
        self.count_dataset(recover=True)
        self.start_watching()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette: Textual's own, tab switching, then every tab's ``commands()``."""
        yield from super().get_system_commands(screen)
        for key, label, _ in TABS:
            yield command(
                self,
                f"Go to {label}",
                f"Show the {label} tab",
                lambda k=key: self.action_show_tab(k),
                f"show_tab('{key}')",
            )
        yield command(
            self,
            "Cycle image mode",
            "Kitty / Sixel / half-blocks / unicode",
            self.action_cycle_image_mode,
            "cycle_image_mode",
        )
        yield command(
            self, "Next theme", "lorawb-dark, lorawb-light, lorawb-256, yours", self.action_cycle_theme, "cycle_theme"
        )
        yield command(self, "Rescan dataset", "Re-read the dataset folder", self.action_rescan, "rescan")
        for key, _, _ in TABS:
            tab = self.query_one(f"#{key}")
            if hasattr(tab, "commands"):
                yield from tab.commands()

    # --- shared state -----------------------------------------------------------
    def select_image(self, rel: str | None) -> None:
        """Make ``rel`` (relative to the project root) the selected image everywhere."""
        self.current_image = rel

    def dataset_changed(self) -> None:
        """A tab changed files (and told the index): other tabs re-read what they show."""
        self.dataset_version += 1
        self.show_counts()

    def caption_writes(self) -> CaptionWrites:
        """Caption writes of this window: applied with its author, told to the app's index at once."""
        return CaptionWrites(self.project, self.index)

    def show_tab(self, key: str) -> None:
        self.action_show_tab(key)

    @work(thread=True, exclusive=True, group="count")
    def count_dataset(self, recover: bool = False) -> None:
        """Header counts first from the cached index (instant), then a rescan; the tabs re-read after it.

        ``recover`` (at start): first finish or drop what a killed lorawb left half done (lorawb.core.journal).
        """
        try:
            if recover:
                try:
                    messages = journal.recover(self.project)
                except (sqlite3.Error, OSError):
                    messages = []  # a read-only or full .lorawb/: what follows meets it and says so
                for message in messages:
                    self.call_from_thread(self.notify, message, title="interrupted change", timeout=10)
            cached = self.index.load_cached()
            if cached is not None:
                self.call_from_thread(setattr, self, "sub_title", self._counts_text(cached))
            snap = self.index.refresh()
        except LorawbError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            return
        self.call_from_thread(self._rescanned, snap)

    def _first_words(self) -> str:
        chars = characters_of(self.project.config)
        if len(chars) > 1:
            return "characters " + ", ".join(c.name for c in chars)
        return f"trigger {self.project.trigger or '(none set)'}"

    def show_counts(self) -> None:
        """Header counts from the index as it is now (no disk access)."""
        self.sub_title = self._counts_text(self.index.snapshot())

    def _counts_text(self, snap: IndexSnapshot) -> str:
        """The one count: every image file (rejects left out), captioned ones, the inbox; unreadable ones named.

        Fitted to the header: when it is too narrow the captioned count goes first, then the trigger, then
        the unreadable image's name; the image and inbox counts always stay.
        """
        c = snap.counts(DATASET)
        inbox = snap.counts(INBOX).images
        trigger = self.project.trigger or "(no trigger set)"
        chars = characters_of(self.project.config)
        if len(chars) > 1:  # several characters: each one's images (alone) and each pair's (together)
            held = (held_of(f.key, f.folder, f.caption_text, chars) for f in snap.images(DATASET))
            cast = Cast.of(held, chars, checks=False)
            trigger = cast.summary() if cast else trigger
        unreadable = []
        if c.unreadable:
            first = c.unreadable[0][0].rsplit("/", 1)[-1]
            more = f" +{len(c.unreadable) - 1}" if len(c.unreadable) > 1 else ""
            unreadable = [f"{len(c.unreadable)} unreadable: {first}{more}", f"{len(c.unreadable)} unreadable"]
        captioned = [f"{c.captioned} captioned"]
        # The header's middle: the width less its icon and clock space, the project name and " — ".
        room = self.size.width - HEADER_SIDES - len(self.title) - 3 if self.size.width else 10_000
        for drop_captioned, drop_trigger, short_bad in ((0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1)):
            parts = [] if drop_trigger else [trigger]
            parts.append(plural(c.images, "image"))
            parts += [] if drop_captioned else captioned
            parts.append(f"inbox {inbox}")
            parts += unreadable[short_bad : short_bad + 1]
            text = " · ".join(parts)
            if len(text) <= room:
                break
        return text

    def on_resize(self) -> None:
        if self.is_mounted:
            self.show_counts()

    # --- the file watcher ---------------------------------------------------------
    def start_watching(self) -> None:
        """Watch the project for changes made by other programs ([ui] watch: auto, poll or off)."""
        mode = self.project.config.ui.watch
        if mode == "off" or self.watcher is not None:
            return
        self.watcher = ProjectWatcher(self.project, self.index, self._watch_batch, polling=mode == "poll")
        try:
            self.watcher.start()
        except OSError as exc:
            self.watcher = None
            self._watch_status(f"file watching off: {exc}; ctrl+r rescans")
            return
        if self.watcher.problem:
            self._watch_status(self.watcher.problem)

    def stop_watching(self) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.stop()

    def on_unmount(self) -> None:
        state.remove_reset_listener(self._state_reset)
        self.stop_watching()
        self.index.close()

    def _state_reset(self, notice: str) -> None:
        """From any thread: the state database was damaged and replaced (lorawb.core.state)."""
        self.post_message(StateReset(notice))

    def on_state_reset(self, msg: StateReset) -> None:
        state.take_notices()  # shown here, not again by a command later in this process
        self.notify(msg.notice, title="state database rebuilt", severity="warning", timeout=20)
        self.count_dataset()  # the index is rebuilt from the files

    def _watch_batch(self, batch: WatchBatch) -> None:
        """From the watcher's thread: hand the batch to the UI thread."""
        try:
            self.post_message(FilesChanged(batch))
        except RuntimeError:
            pass  # the app is shutting down

    def _watch_status(self, text: str) -> None:
        status = self.query_one("#watch-status", Static)
        status.update(Text(text))
        status.display = bool(text)

    def on_files_changed(self, msg: FilesChanged) -> None:
        batch = msg.batch
        self.watch_batches += 1
        if batch.status is not None:
            self._watch_status(batch.status)
        if batch.error:
            self.notify(batch.error, severity="error", markup=False)
        if batch.config is not None:
            self._config_changed(batch)
        if batch.delta:
            self.show_counts()
            for key in ("triage", "captions"):
                self._tell(key, DatasetChanged(batch))
        if batch.runs:
            self._tell("train", RunsChanged(frozenset(batch.runs)))
        if batch.matrices:
            self._tell("matrix", MatricesChanged(frozenset(batch.matrices)))

    def _tell(self, tab: str, message: Message) -> None:
        """Post to a tab; a batch that arrives while the app shuts down finds the tabs gone, and is dropped."""
        for widget in self.query(f"#{tab}"):
            widget.post_message(message)

    def _config_changed(self, batch: WatchBatch) -> None:
        change = batch.config
        assert change is not None
        if change.project is None:
            self.notify(
                f"{change.error}\nThe last good settings stay in force.",
                title="lorawb.toml not reloaded",
                severity="error",
                timeout=15,
                markup=False,
            )
            return
        new = change.project
        old_areas = project_areas(self.project)
        p = self.project  # the tabs share this object: it takes the new settings in place
        p.config, p.document, p.config_text = new.config, new.document, new.config_text
        self.sub_title = self._counts_text(self.index.snapshot())
        if project_areas(p) != old_areas:  # dataset_dir / inbox_dir moved: a new index, watched anew
            self.stop_watching()
            self.index.close()
            self.index = ProjectIndex(p)
            self.start_watching()
            self.count_dataset()
        self.notify("lorawb.toml changed on disk: reloaded", timeout=4)
        for key, _, _ in TABS:
            self.query_one(f"#{key}").post_message(ConfigReloaded(p))

    # --- leaving -----------------------------------------------------------------
    async def action_quit(self) -> None:
        """ctrl+q (and the palette's Quit): with an unsaved caption edit, ask save / discard / cancel first."""
        self.leave_then(self.exit, "quitting")

    def leave_then(self, go: Callable[[], object], what: str) -> None:
        """Run ``go`` (quit, open another project) once no unsaved caption edit would be lost.

        With one, a dialog asks: save (written first; a conflict on disk shows its own dialog and
        ``go`` waits for the next try), discard (the edit is dropped, the file stays as on disk), or
        cancel (back to the edit).
        """
        tab = self.query_one(CaptionsTab)
        name = tab.unsaved()
        if name is None:
            go()
            return

        def chosen(choice: str | None) -> None:
            if choice == "save":
                if tab.save_before_leaving():
                    go()
            elif choice == "discard":
                go()

        self.push_screen(UnsavedScreen(name, what), chosen)

    # --- actions ----------------------------------------------------------------
    def action_show_tab(self, key: str) -> None:
        self.query_one(TabbedContent).active = f"tab-{key}"
        tab = self.query_one(f"#{key}")
        target = tab.focus_target() if hasattr(tab, "focus_target") else None
        (target or tab).focus()

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active.removeprefix("tab-")

    def action_cycle_theme(self) -> None:
        names = sorted(n for n in self.available_themes if n.startswith("lorawb")) or sorted(self.available_themes)
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)

    def action_cycle_image_mode(self) -> None:
        i = IMAGE_MODES.index(self.image_mode) if self.image_mode in IMAGE_MODES else 0
        self.image_mode = IMAGE_MODES[(i + 1) % len(IMAGE_MODES)]
        self.notify(f"images: {self.image_mode}", timeout=2)

    def action_rescan(self) -> None:
        """Walk every image folder again (what the watcher would have seen), then every tab re-reads."""
        self.count_dataset()

    def _rescanned(self, snap: IndexSnapshot) -> None:
        self.sub_title = self._counts_text(snap)
        self.dataset_changed()
