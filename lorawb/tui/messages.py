"""Messages the app sends its tabs when files change outside them (from the core's file watcher).

The watcher (lorawb.core.watch) runs in its own thread and hands each coalesced batch to
the app as ``FilesChanged``; the app, on its own thread, updates what it owns (header
counts, lorawb.toml) and posts one of the messages below to each tab that shows it. A tab
handles them with ``on_dataset_changed`` / ``on_runs_changed`` / ``on_matrices_changed`` /
``on_config_reloaded``. None of them bubble: each is for the tab it is posted to.
"""

from __future__ import annotations

from textual.message import Message

from lorawb.core.project import Project
from lorawb.core.watch import WatchBatch


class FilesChanged(Message):
    """A batch from the file watcher (posted to the app from the watcher's thread)."""

    def __init__(self, batch: WatchBatch) -> None:
        super().__init__()
        self.batch = batch


class DatasetChanged(Message, bubble=False):
    """Images or captions changed on disk; the shared index already holds the change.

    ``batch.delta`` says what changed (added, changed, removed, moved keys); ``batch.outside``
    and ``batch.outside_captions`` the part made by other programs (the app's own writes are
    in the delta only).
    """

    def __init__(self, batch: WatchBatch) -> None:
        super().__init__()
        self.batch = batch


class RunsChanged(Message, bubble=False):
    """Run folders under runs/ appeared, changed or went away."""

    def __init__(self, names: frozenset[str]) -> None:
        super().__init__()
        self.names = names


class MatricesChanged(Message, bubble=False):
    """Something under matrices/ changed: a new matrix folder, a new cell, its events or ratings.

    ``ids`` are the matrix folder names (``matrices/<id>/``) with changes. The Matrix tab's hook:
    whatever it shows of those matrices should be re-read.
    """

    def __init__(self, ids: frozenset[str]) -> None:
        super().__init__()
        self.ids = ids


class ConfigReloaded(Message, bubble=False):
    """lorawb.toml changed on disk and validated: ``project`` (the app's own object) holds the new settings."""

    def __init__(self, project: Project) -> None:
        super().__init__()
        self.project = project


class StateReset(Message):
    """The state database was found damaged and moved aside (lorawb.core.state): ``notice`` says what was lost.

    Posted to the app from whichever thread found it; the app shows it and rescans.
    """

    def __init__(self, notice: str) -> None:
        super().__init__()
        self.notice = notice
