"""Where lorawb may write, and names that must stay names.

**Writes stay in the project.** Captions, triage moves, rejects and promotions only
touch files whose real folder (symbolic links followed) is inside the project's own
real path, or inside an image folder the user linked on purpose: ``dataset/`` made by
``lorawb init --link`` (a symlink to the user's image folder), or a ``dataset_dir`` /
``inbox_dir`` set to a path outside the project in lorawb.toml. A symbolic link *inside*
dataset/ that leads elsewhere (``5_rootlink -> /``) is read by scans within their limits
(lorawb.core.layout) but never written through: ``WriteScope.refuse`` says why.

**Names stay names.** A setting or option that becomes a file or folder name (a reg
class, a matrix name, a save name, a run label) is one plain name inside its folder:
``name_in`` refuses ``../x``, ``/abs``, ``a/b``, control characters and names too long
for the file system, with an error naming the key.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from lorawb.errors import ConfigError

if TYPE_CHECKING:
    from lorawb.core.project import Project

NAME_MAX_BYTES = 200  # a file name may hold 255 bytes; leave room for the suffixes lorawb adds (-000010.safetensors)


class WriteScope:
    """The real folders a project's writes may touch (see the module)."""

    def __init__(self, project: Project) -> None:
        folders = [project.root, project.dataset_dir, project.inbox_dir, project.reg_dir]
        self.project = project
        self.roots = tuple(dict.fromkeys(os.path.realpath(f) for f in folders))
        self._real: dict[str, str] = {}  # folder as written -> its real path (few folders, many files)

    def real_folder(self, path: Path | str) -> str:
        d = os.path.dirname(os.path.abspath(os.fspath(path)))
        real = self._real.get(d)
        if real is None:
            real = self._real[d] = os.path.realpath(d)
        return real

    def refuse(self, path: Path | str) -> str | None:
        """None when lorawb may write ``path`` (create, replace, move away); else why not, in words."""
        real = self.real_folder(path)
        for root in self.roots:
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                return None
        shown = os.path.dirname(os.path.abspath(os.fspath(path)))
        return (
            f"outside the project: {shown} leads to {real} through a symbolic link; lorawb writes only inside "
            "the project (and inside a folder linked on purpose with `lorawb init --link`)"
        )


def name_in(folder: Path, name: str, key: str) -> Path:
    """``folder / name`` when ``name`` is one plain name that stays inside ``folder``; else a
    ConfigError that names ``key`` (a setting such as ``save.name``, or an option such as ``--class``)."""
    why = name_problem(name)
    if why is not None:
        raise ConfigError(
            f"{key} = {name!r}: {why}; it must name a file or folder inside {folder}",
            hint="use a plain name (letters, digits, spaces, - _ .), no / \\ or ..",
        )
    return folder / name


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one file or folder name inside a folder; None when it can."""
    if not name.strip():
        return "an empty name"
    if name in (".", "..") or name.startswith("../") or name.startswith("..\\"):
        return "it leads out of its folder"
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path, not a name"
    if "/" in name or "\\" in name or os.sep in name:
        return "a path, not a name (it holds a / or \\)"
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return "it holds control characters (a newline, a tab, NUL)"
    if name.startswith("."):
        return "it starts with a dot (a hidden file, skipped by every scan)"
    size = len(name.encode("utf-8", errors="surrogatepass"))
    if size > NAME_MAX_BYTES:
        return f"{size} bytes long, over the {NAME_MAX_BYTES} a name may take here"
    return None
