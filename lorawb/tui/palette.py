"""Command palette entries that show their key, read from the bindings (one place for both).

``command(owner, title, help, callback, action)`` makes a ``SystemCommand`` whose title ends
with the key bound to ``action`` on ``owner`` (a tab, the app): ``Matrix: new matrix (n)``.
A command without a key of its own names the key that reaches it (``key="s"``: "s cycles").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import SystemCommand
from textual.binding import Binding
from textual.dom import DOMNode


def bound_key(owner: DOMNode, action: str) -> str:
    """The key(s) bound to ``action`` on ``owner``, as the footer shows them ("" when none)."""
    for cls in type(owner).__mro__:
        for b in getattr(cls, "BINDINGS", None) or ():
            if isinstance(b, Binding) and b.action == action:
                keys = [k.strip() for k in b.key.split(",") if k.strip()]
                app = owner.app
                return "/".join(app.get_key_display(Binding(k, b.action, b.description)) for k in keys[:2])
    return ""


def command(
    owner: DOMNode,
    title: str,
    help: str,
    callback: Callable[[], Any],
    action: str | None = None,
    *,
    key: str | None = None,
) -> SystemCommand:
    """A palette entry titled with its key: the binding of ``action`` on ``owner``, or ``key`` as given."""
    shown = key if key is not None else bound_key(owner, action) if action else ""
    if action and not shown:
        raise ValueError(f"{type(owner).__name__} has no binding for {action!r}")
    return SystemCommand(f"{title} ({shown})" if shown else title, help, callback)
