"""The Textual app: composes the tabs and routes global bindings. Each tab owns its behaviour."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# textual_image probes the terminal's graphics support on import: before the app starts.
import textual_image.widget  # noqa: F401
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from lorawb.core import layout
from lorawb.core.dataset import ScanResult
from lorawb.core.index import DatasetIndex
from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.tui.tabs.captions import CaptionsTab
from lorawb.tui.tabs.matrix import MatrixTab
from lorawb.tui.tabs.train import TrainTab
from lorawb.tui.tabs.triage import TriageTab
from lorawb.tui.themes import MEANING_DEFAULTS, load_themes
from lorawb.tui.widgets.image_view import IMAGE_MODES

TABS = (
    ("triage", "Triage", TriageTab),
    ("captions", "Captions", CaptionsTab),
    ("train", "Train", TrainTab),
    ("matrix", "Matrix", MatrixTab),
)
HERE = Path(__file__).parent


class LorawbApp(App):
    CSS_PATH = [HERE / "app.tcss", *(HERE / "tabs" / f"{key}.tcss" for key, _, _ in TABS)]
    TITLE = "lorawb"
    BINDINGS = [
        Binding("1", "show_tab('triage')", "Triage", show=False),
        Binding("2", "show_tab('captions')", "Captions", show=False),
        Binding("3", "show_tab('train')", "Train", show=False),
        Binding("4", "show_tab('matrix')", "Matrix", show=False),
        Binding("ctrl+t", "cycle_theme", "Theme"),
        Binding("ctrl+g", "cycle_image_mode", "Images"),
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

    # --- set-up ---------------------------------------------------------------
    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {**super().get_theme_variable_defaults(), **MEANING_DEFAULTS}

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs"):
            for key, label, cls in TABS:
                with TabPane(label, id=f"tab-{key}"):
                    yield cls(self.project, id=key)
        yield Footer()

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
        self.sub_title = f"trigger {self.project.trigger or '(none set)'}"
        self.count_dataset()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette: Textual's own, tab switching, then every tab's ``commands()``."""
        yield from super().get_system_commands(screen)
        for key, label, _ in TABS:
            yield SystemCommand(f"Go to {label}", f"Show the {label} tab", lambda k=key: self.action_show_tab(k))
        yield SystemCommand("Cycle image mode", "Kitty / Sixel / half-blocks / unicode", self.action_cycle_image_mode)
        yield SystemCommand("Rescan dataset", "Re-read the dataset folder", self.action_rescan)
        for key, _, _ in TABS:
            tab = self.query_one(f"#{key}")
            if hasattr(tab, "commands"):
                yield from tab.commands()

    # --- shared state -----------------------------------------------------------
    def select_image(self, rel: str | None) -> None:
        """Make ``rel`` (relative to the project root) the selected image everywhere."""
        self.current_image = rel

    def dataset_changed(self) -> None:
        """A tab changed files: other tabs re-read what they show."""
        self.dataset_version += 1
        self.count_dataset()

    @work(thread=True, exclusive=True, group="count")
    def count_dataset(self) -> None:
        """Header counts: first from the cached index (instant), then from a rescan."""
        index = DatasetIndex(self.project)
        try:
            cached = index.load_cached()
            if cached is not None:
                self.call_from_thread(setattr, self, "sub_title", self._counts_text(cached))
            self.call_from_thread(setattr, self, "sub_title", self._counts_text(index.refresh()))
        except LorawbError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
        finally:
            index.close()

    def _counts_text(self, scan: ScanResult) -> str:
        images = len(scan.images)
        captioned = sum(1 for f in scan.images if f.has_caption)
        inbox_dir = self.project.inbox_dir
        inbox = sum(1 for _ in layout.walk_images(inbox_dir)) if inbox_dir.is_dir() else 0
        trigger = self.project.trigger or "(no trigger set)"
        text = f"{trigger} · {images} images · {captioned} captioned · inbox {inbox}"
        if scan.unreadable:
            text += f" · {len(scan.unreadable)} unreadable"
        return text

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
        self.dataset_changed()
