"""Load themes/*.toml into Textual themes, tolerantly: a bad file is reported, never fatal."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import tomlkit
from textual.theme import Theme

from lorawb.core.fsutil import read_text
from lorawb.core.userdirs import config_home

# Colours with a meaning, used in the .tcss files as $kept, $loss...; a theme may override them.
MEANING_DEFAULTS = {
    "kept": "#5fd787",
    "rejected": "#ff5f5f",
    "flagged": "#ffd75f",
    "unreviewed": "#8a8f98",
    "loss": "#5fafff",
    "loss-smooth": "#ffaf5f",
    "val-loss": "#ff87d7",
    "lr": "#af87ff",
    "diff-add": "#5fd787",
    "diff-del": "#ff5f5f",
    "conflict": "#ff8700",
}

_THEME_FIELDS = {f.name for f in fields(Theme)}


def theme_dirs(project_root: Path | None = None) -> list[Path]:
    """Bundled themes, the user's, then the project's own.

    ``bundled_themes`` is a link to the checkout's themes/ that the wheel carries as files,
    so an editable install and a plain ``pip install`` both find them.
    """
    dirs = [Path(__file__).parent / "bundled_themes"]
    dirs.append(config_home() / "themes")
    if project_root is not None:
        dirs.append(project_root / ".lorawb" / "themes")
    return dirs


def load_theme_file(path: Path) -> Theme:
    """One theme file -> Theme. Raises ValueError with a message naming the problem."""
    try:
        data = tomlkit.parse(read_text(path).text).unwrap()
    except Exception as exc:  # tomlkit raises several types for bad input
        raise ValueError(f"{path}: invalid TOML: {exc}") from exc
    unknown = set(data) - _THEME_FIELDS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    if "name" not in data or "primary" not in data:
        raise ValueError(f"{path}: a theme needs at least `name` and `primary`")
    variables = {**MEANING_DEFAULTS, **{k: str(v) for k, v in dict(data.get("variables", {})).items()}}
    data["variables"] = variables
    try:
        theme = Theme(**data)
        theme.to_color_system()  # validates every colour now, not at first paint
    except Exception as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return theme


def load_themes(project_root: Path | None = None) -> tuple[list[Theme], list[str]]:
    """All loadable themes and a list of problems (one line each) for the ones that failed."""
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for d in theme_dirs(project_root):
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            themes[theme.name] = theme
    return list(themes.values()), problems
