"""Who this window is in the caption history: each app instance (window) has its own author id.

``u``/``U`` in a window undo and redo that window's own caption changes only; a change made by
another window or the CLI is undone only when chosen in the history view (``H`` in Captions).
"""

from __future__ import annotations

from textual.app import App

from lorawb.core.caption_history import new_window_id


def window_author(app: App) -> str:
    """The app's author id (``LorawbApp.author``); a host app without one (a test harness) gets one too."""
    author = getattr(app, "author", None)
    if not isinstance(author, str):
        author = new_window_id()
        app.author = author  # type: ignore[attr-defined]
    return author
