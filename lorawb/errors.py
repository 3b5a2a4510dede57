"""Errors a user can meet. Each message names the file/key and says what to do.

The CLI prints these without a traceback (``--debug`` shows it); the app shows
them in a notification. Anything that is *not* a LorawbError is a bug.
"""

from __future__ import annotations

from pathlib import Path


class LorawbError(Exception):
    """Base class: ``str(err)`` is the whole message shown to the user."""

    def __init__(
        self, message: str, *, path: Path | str | None = None, line: int | None = None, hint: str | None = None
    ) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        text = where + self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ProjectError(LorawbError):
    """The project folder or lorawb.toml cannot be used."""


class ConfigError(LorawbError):
    """A config file is invalid: bad TOML, unknown key, wrong type."""


class ImageError(LorawbError):
    """An image cannot be read (corrupt, truncated, too large)."""


class CaptionError(LorawbError):
    """A caption operation cannot be carried out (bad regex, conflict...)."""


class ConflictError(CaptionError):
    """A file changed on disk since the app read it; nothing was overwritten."""


class ModelError(LorawbError):
    """A base model is missing, of an unknown family, or unsafe to load."""


class RunError(LorawbError):
    """A training run cannot be started, stopped or resumed."""
