"""A project folder: where things are, and its validated lorawb.toml."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tomlkit.toml_document import TOMLDocument

from lorawb.core import tomlio
from lorawb.core.config import DEFAULT_TOML, ProjectConfig
from lorawb.errors import ConfigError, ProjectError

CONFIG_NAME = "lorawb.toml"
STATE_DIR = ".lorawb"


@dataclass
class Project:
    root: Path
    config: ProjectConfig
    document: TOMLDocument = field(repr=False)
    config_text: str = field(default="", repr=False)

    # --- locations -------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.project.name or self.root.name

    @property
    def trigger(self) -> str:
        return self.config.project.trigger

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def dataset_dir(self) -> Path:
        return self.root / self.config.project.dataset_dir

    @property
    def rejected_dir(self) -> Path:
        return self.dataset_dir / "rejected"

    @property
    def reg_dir(self) -> Path:
        """Regularisation images (kohya's N_class folders); the trainer uses them when the folder exists."""
        return self.root / "reg"

    @property
    def inbox_dir(self) -> Path:
        return self.root / self.config.project.inbox_dir

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def matrices_dir(self) -> Path:
        return self.root / "matrices"

    @property
    def state_dir(self) -> Path:
        d = self.root / STATE_DIR
        d.mkdir(exist_ok=True)
        return d

    def resolve(self, p: str | Path) -> Path:
        """A path from the config: relative paths are relative to the project folder."""
        p = Path(p).expanduser()
        return p if p.is_absolute() else self.root / p

    # --- load / save -----------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None) -> Project:
        """Open the project at ``path`` (or the nearest parent holding lorawb.toml)."""
        start = Path(path or ".").expanduser().resolve()
        if start.is_file() and start.name == CONFIG_NAME:
            start = start.parent
        root = _find_root(start)
        if root is None:
            if not start.exists():
                raise ProjectError("no such folder", path=start, hint="create a project with `lorawb init PATH`")
            raise ProjectError(
                f"not a lorawb project (no {CONFIG_NAME} here or above)",
                path=start,
                hint=f"create one with `lorawb init {start}`",
            )
        cfg_path = root / CONFIG_NAME
        doc, text = tomlio.load_document(cfg_path)
        config = tomlio.validate(ProjectConfig, tomlio.to_plain(doc), path=cfg_path, text=text)
        return cls(root=root, config=config, document=doc, config_text=text)

    def save_setting(self, dotted: str, value: object) -> None:
        """Change one setting in lorawb.toml, keeping the user's comments and layout."""
        parts = dotted.split(".")
        # Change a copy: a value that fails validation must leave the project as it was.
        document = tomlio.tomlkit.parse(tomlio.tomlkit.dumps(self.document))
        table = document
        for p in parts[:-1]:
            if p not in table:
                table[p] = tomlio.tomlkit.table()
            table = table[p]
        table[parts[-1]] = value
        plain = tomlio.to_plain(document)
        text = tomlio.tomlkit.dumps(document)
        config = tomlio.validate(ProjectConfig, plain, path=self.config_path, text=text)
        tomlio.save_document(self.config_path, document)
        self.document, self.config, self.config_text = document, config, text


def _find_root(start: Path) -> Path | None:
    for d in (start, *start.parents):
        if (d / CONFIG_NAME).is_file():
            return d
    return None


def init_project(
    path: str | Path,
    *,
    trigger: str = "",
    images: str | Path | None = None,
    link: bool = False,
    name: str | None = None,
) -> Project:
    """Create a project folder. With ``images``, copy (or symlink) that folder into dataset/.

    Nothing is overwritten: an existing lorawb.toml or a non-empty dataset/ is refused, and
    a copy that fails half-way leaves no dataset/ behind.
    """
    root = Path(path).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ProjectError("exists and is not a folder", path=root)
    if (root / CONFIG_NAME).exists():
        raise ProjectError(
            f"a project already exists here ({CONFIG_NAME}); nothing was changed",
            path=root,
            hint=f"open it with `lorawb {root}`, or choose another folder",
        )
    if link and images is None:
        raise ProjectError("--link needs --images DIR (the folder to link as dataset/)")
    trigger = trigger.strip()
    if "," in trigger or "\n" in trigger:
        raise ConfigError(
            f"--trigger {trigger!r}: the trigger must be a single tag (no commas or newlines)",
            hint="e.g. --trigger zkx_mira",
        )
    src: Path | None = None
    if images is not None:
        src = Path(images).expanduser().resolve()
        if not src.is_dir():
            raise ProjectError("--images must be a folder of images", path=src)
    dataset = root / "dataset"
    if src is not None and (dataset.is_symlink() or (dataset.exists() and any(dataset.iterdir()))):
        raise ProjectError("dataset/ already has files; not copying over them", path=dataset)
    text = DEFAULT_TOML.format(name=_toml_str(name or root.name), trigger=_toml_str(trigger))
    tomlio.validate(ProjectConfig, tomlio.tomlkit.parse(text).unwrap(), path=root / CONFIG_NAME, text=text)

    root.mkdir(parents=True, exist_ok=True)
    if src is not None:
        if dataset.exists():
            dataset.rmdir()  # empty, checked above
        if link:
            dataset.symlink_to(src, target_is_directory=True)
        else:
            _copy_dataset(src, dataset)
    for sub in ("dataset", "inbox", "runs", "matrices"):
        (root / sub).mkdir(exist_ok=True)
    tomlio.atomic_write_text(root / CONFIG_NAME, text)
    return Project.load(root)


def _toml_str(value: str) -> str:
    """``value`` escaped for the inside of a TOML basic string (quotes, backslashes)."""
    return tomlio.tomlkit.string(value).as_string()[1:-1]


def _copy_dataset(src: Path, dataset: Path) -> None:
    """Copy ``src``'s visible files into ``dataset`` (following symlinks, surviving loops), all or nothing."""
    tmp = Path(tempfile.mkdtemp(prefix=".dataset.", suffix=".partial", dir=dataset.parent))
    seen: set[tuple[int, int]] = set()
    try:
        for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            target = tmp / os.path.relpath(dirpath, src)
            target.mkdir(parents=True, exist_ok=True)
            for fname in sorted(filenames):
                source = Path(dirpath) / fname
                if fname.startswith(".") or not source.exists():  # hidden, or a broken symlink
                    continue
                shutil.copy2(source, target / fname)
        os.replace(tmp, dataset)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        where = exc.filename or src
        raise ProjectError(f"copying the images failed: {exc.strerror or exc}; nothing was kept", path=where) from exc
