"""What a tab may use of the app: one typed interface instead of reaching into it by name.

The app (``LorawbApp``) owns what the tabs share: the project, its index, this window's author id
in the caption history, the selected image and the list the Triage tab shows, the dataset version
every tab follows, the image mode. A tab reads and calls these through ``Workbench``; it changes
another tab only through them (messages go down from the app: lorawb.tui.messages).
``tests/tui/test_workbench.py`` checks the app provides all of it and that no tab reaches the app
any other way (``getattr(self.app, …)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

if TYPE_CHECKING:
    from textual.dom import DOMNode

    from lorawb.core.caption_writes import CaptionWrites
    from lorawb.core.index import ProjectIndex
    from lorawb.core.project import Project


@runtime_checkable
class Workbench(Protocol):
    project: Project
    index: ProjectIndex  # the one index every tab reads (kept in step by the file watcher)
    author: str  # this window in the caption history: u/U undo and redo its own changes
    current_image: str | None  # the selected image everywhere (relative to the project)
    image_list: tuple[str, ...]  # the images the Triage tab lists (Captions follows it)
    dataset_version: int  # bumped when a tab changed files: the others re-read
    image_mode: str  # auto, halfcell, unicode, sixel, tgp

    @property
    def active_tab(self) -> str: ...

    def select_image(self, rel: str | None) -> None: ...

    def dataset_changed(self) -> None: ...

    def show_tab(self, key: str) -> None: ...

    def caption_writes(self) -> CaptionWrites: ...


def workbench(node: DOMNode) -> Workbench:
    """The app ``node`` runs in, as a tab may use it."""
    return cast(Workbench, node.app)
