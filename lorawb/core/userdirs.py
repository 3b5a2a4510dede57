"""The user's own folders, outside any project (XDG base directories).

    config_home()   $XDG_CONFIG_HOME/lorawb or ~/.config/lorawb: themes, machine-wide settings
    state_home()    $LORAWB_STATE_DIR, else $XDG_STATE_HOME/lorawb or ~/.local/state/lorawb:
                    what lorawb keeps per machine (the job queue)

``LORAWB_STATE_DIR`` lets tests (and a user with several independent queues) point the
machine's state somewhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_ENV = "LORAWB_STATE_DIR"


def config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "lorawb"


def state_home() -> Path:
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).expanduser()
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "lorawb"
