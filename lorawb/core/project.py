"""A project folder: where things are, and its validated lorawb.toml."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tomlkit.toml_document import TOMLDocument

from lorawb.core import tomlio
from lorawb.core.characters import CharactersSection
from lorawb.core.config import EXAMPLE_GROUPS, ProjectConfig, default_toml
from lorawb.core.layout import _REPEATS, folder_repeats, is_image
from lorawb.errors import ConfigError, ProjectError
from lorawb.words import plural

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
            found = images_folder(path or ".")
            raise ProjectError(
                f"not a lorawb project (no {CONFIG_NAME} here or above)",
                path=start,
                hint=found.hint() if found else f"create one with `lorawb init {start}`",
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


@dataclass(frozen=True)
class ImagesFolder:
    """A folder of images that is not a project, and the project beside it that would use them."""

    folder: str  # as the user named it
    images: int
    project: str  # the suggested project folder: the kohya name without its repeats, beside it

    def command(self) -> str:
        return f"lorawb init {self.project} --images {self.folder}"

    def hint(self) -> str:
        return f"it holds {plural(self.images, 'image')}: `{self.command()}` makes a project beside it that uses them"


def images_folder(path: str | Path) -> ImagesFolder | None:
    """``path`` when it holds image files itself (a kohya ``10_name/`` folder, a folder of pictures)."""
    folder = Path(path).expanduser()
    try:
        n = sum(1 for p in folder.iterdir() if is_image(p) and p.is_file())
    except OSError:
        return None
    if n == 0:
        return None
    shown = str(path).rstrip("/") or "."
    resolved = folder.resolve()
    _, name = folder_repeats(resolved.name)
    if name == resolved.name:
        name += "-lora"
    parent = Path(shown).parent
    project = name if str(parent) in (".", "") else (parent / name).as_posix()
    return ImagesFolder(shown, n, project)


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
    found = images_folder(path) if images is None else None
    if found is not None:
        raise ProjectError(
            f"holds {plural(found.images, 'image')}: a project keeps its images in dataset/, so this would make an "
            "empty project beside them; nothing was changed",
            path=root,
            hint=f"`{found.command()}` makes a project beside it that uses them",
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
    text = default_toml(_toml_str(name or root.name), _toml_str(trigger))
    tomlio.validate(ProjectConfig, tomlio.tomlkit.parse(text).unwrap(), path=root / CONFIG_NAME, text=text)

    root.mkdir(parents=True, exist_ok=True)
    if src is not None:
        if dataset.exists():
            dataset.rmdir()  # empty, checked above
        # A kohya image folder itself (`10_ohwx_knight/`) keeps its name, so its repeats stay.
        kohya_leaf = _REPEATS.match(src.name) is not None and not link
        if link:
            dataset.symlink_to(src, target_is_directory=True)
        elif kohya_leaf:
            _copy_dataset(src, dataset / src.name)
        else:
            _copy_dataset(src, dataset)
        found = survey_dataset(dataset)
        if not trigger and found.trigger:
            trigger = found.trigger
        text = default_toml(
            _toml_str(name or root.name),
            _toml_str(trigger),
            groups=found.groups_toml(),
            prompts=found.prompts_toml(),
        )
        text += found.characters_toml()
        tomlio.validate(ProjectConfig, tomlio.tomlkit.parse(text).unwrap(), path=root / CONFIG_NAME, text=text)
    for sub in ("dataset", "inbox", "runs", "matrices"):
        (root / sub).mkdir(exist_ok=True)
    tomlio.atomic_write_text(root / CONFIG_NAME, text)
    return Project.load(root)


@dataclass
class DatasetSurvey:
    """What a new project learns from the dataset it starts with: a trigger proposal, frequent tags."""

    trigger: str = ""
    trigger_from: str = ""  # e.g. "the folder name 10_ohwx_knight"
    repeats: dict[str, int] = field(default_factory=dict)  # kohya folder -> repeats
    top_tags: list[tuple[str, int]] = field(default_factory=list)  # (tag, captions having it), trigger left out
    captions: int = 0
    characters: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (trigger, its kohya folder)

    def characters_toml(self) -> str:
        """``[characters.<name>]`` tables, one per kohya folder of its own (several folders: several characters)."""
        if len(self.characters) < 2:
            return ""
        out = [
            "",
            "# Several characters, one per kohya folder: each one's trigger leads its captions; joint folders",
            "# (5_a+b) hold images where two appear. invariant: what the trigger carries (auto-tag leaves it out).",
            "[characters]",
            'balance = "equal"',
        ]
        for name, (trigger, folder) in self.characters.items():
            out += ["", f"[characters.{name}]", f"trigger = {_toml_list([trigger])[1:-1]}"]
            out += ["invariant = []", f"folders = {_toml_list([folder])}"]
        return "\n".join(out) + "\n"

    def groups_toml(self) -> str:
        """[tags.groups] body: the frequent tags as a commented start (a group is a choice of meaning)."""
        if not self.top_tags:
            return EXAMPLE_GROUPS
        tags = [t for t, _ in self.top_tags[:12]]
        listed = ", ".join(f"{t} ({n})" for t, n in self.top_tags[:12])
        return (
            f"# The dataset's most frequent tags: {listed}.\n"
            "# Group the ones that vary, e.g. (uncomment and edit):\n"
            f"# varies = {_toml_list(tags[:4])}\n"
        )

    def prompts_toml(self) -> str:
        """Sample prompts: the trigger alone, then with each of the dataset's three most frequent tags (several
        characters: each trigger alone, then with the most frequent tag)."""
        if len(self.characters) > 1:
            triggers = [t for t, _ in self.characters.values()]
            top = [f"{t}, {self.top_tags[0][0]}" for t in triggers] if self.top_tags else []
            return _toml_list([*triggers, *top])
        return _toml_list(["{trigger}", *(f"{{trigger}}, {t}" for t, _ in self.top_tags[:3])])


def survey_dataset(dataset: Path) -> DatasetSurvey:
    """Repeats per kohya folder, the trigger the folder name (or the captions' first tag) proposes, tag counts."""
    from collections import Counter

    from lorawb.core.captions import tag_key, tags_of
    from lorawb.core.fsutil import read_text
    from lorawb.core.layout import CAPTION_MAX_BYTES, caption_path_for, walk_images
    from lorawb.errors import LorawbError

    out = DatasetSurvey()
    counts: Counter[str] = Counter()
    spelled: dict[str, str] = {}
    firsts: Counter[str] = Counter()
    per_folder: Counter[str] = Counter()
    for image in walk_images(dataset):
        rel = image.relative_to(dataset)
        top = rel.parts[0] if len(rel.parts) > 1 else ""
        per_folder[top] += 1
        cap = caption_path_for(image)
        if not cap.is_file():
            continue
        try:
            tags = [t.strip() for t in tags_of(read_text(cap, limit=CAPTION_MAX_BYTES).text) if t.strip()]
        except LorawbError:
            continue
        if not tags:
            continue
        out.captions += 1
        firsts[tag_key(tags[0])] += 1
        for t in dict.fromkeys(tag_key(t) for t in tags):
            counts[t] += 1
        for t in tags:
            spelled.setdefault(tag_key(t), t)
    kohya = {f: folder_repeats(f) for f in per_folder if _REPEATS.match(f)}
    out.repeats = {f: n for f, (n, _) in kohya.items()}
    out.characters = _characters(kohya, spelled, firsts, per_folder)
    if len(out.characters) > 1:
        pass  # several characters: each has its trigger; [project] trigger stays unset
    elif kohya:
        folder = max(kohya, key=lambda f: (per_folder[f], f))
        name = kohya[folder][1].strip()
        key = tag_key(name)
        # the captions' own spelling of it (ohwx knight / ohwx_knight), when they lead with it
        proposal = spelled.get(key, name) if firsts.get(key) else name
        if proposal and "," not in proposal:
            out.trigger, out.trigger_from = proposal, f"the folder name {folder}"
    elif firsts and out.captions:
        key, n = firsts.most_common(1)[0]
        if n * 2 > out.captions and "," not in spelled[key]:
            out.trigger, out.trigger_from = spelled[key], f"the first tag of {n} of {out.captions} captions"
    triggers = {tag_key(t) for t in [out.trigger, *(t for t, _ in out.characters.values())] if t}
    out.top_tags = [(spelled[k], n) for k, n in counts.most_common() if k not in triggers][:20]
    return out


def _characters(
    kohya: dict[str, tuple[int, str]], spelled: dict[str, str], firsts: dict[str, int], images: dict[str, int]
) -> dict[str, tuple[str, str]]:
    """One character per kohya folder naming one concept (``10_zkx_mira``), joint folders (``5_a+b``) left out;
    named by the concept's last word (``mira``) unless two share it. Fewer than two: none.

    In the order a joint folder names them (``5_zkx_mira+qvr_tom``: mira, then tom), else most images first."""
    import re

    from lorawb.core.captions import tag_key
    from lorawb.core.characters import JOINER

    joint_order: list[str] = []
    for folder in sorted(kohya):
        if JOINER in kohya[folder][1]:
            joint_order += [tag_key(c) for c in kohya[folder][1].split(JOINER) if tag_key(c) not in joint_order]

    def rank(folder: str) -> tuple[int, int, str]:
        key = tag_key(kohya[folder][1])
        at = joint_order.index(key) if key in joint_order else len(joint_order)
        return at, -images.get(folder, 0), folder

    solo: dict[str, str] = {}  # trigger -> folder (the first of several naming it)
    for folder in sorted(kohya, key=rank):
        concept = kohya[folder][1].strip()
        if not concept or JOINER in concept or "," in concept:
            continue
        key = tag_key(concept)
        trigger = spelled.get(key, concept) if firsts.get(key) else concept
        if all(tag_key(t) != key for t in solo):
            solo[trigger] = folder
    if len(solo) < 2:
        return {}

    def slug(text: str) -> str:
        return re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_") or "character"

    short = {t: slug(re.split(r"[\s_]+", t.strip())[-1]) for t in solo}
    taken = set(CharactersSection.model_fields)  # [characters] balance, pair_template: not names
    names = {
        t: short[t] if list(short.values()).count(short[t]) == 1 and short[t] not in taken else slug(t) for t in solo
    }
    return {names[t]: (t, f) for t, f in solo.items()}


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(tomlio.tomlkit.string(i).as_string() for i in items) + "]"


def _toml_str(value: str) -> str:
    """``value`` escaped for the inside of a TOML basic string (quotes, backslashes)."""
    return tomlio.tomlkit.string(value).as_string()[1:-1]


def _normal_permissions(folder: Path) -> None:
    """mkdtemp makes a 0700 folder: give it (and the folders copied in) the mode the umask allows."""
    mask = os.umask(0)
    os.umask(mask)
    mode = 0o777 & ~mask
    for dirpath, _dirs, _files in os.walk(folder):
        os.chmod(dirpath, mode)


def _copy_dataset(src: Path, dataset: Path) -> None:
    """Copy ``src``'s visible files into ``dataset`` (following symlinks, surviving loops), all or nothing.

    Folder links are followed as scans follow them (``layout.link_refusal``): never to /, above ``src``
    or the project, or into /proc, /sys, /dev.
    """
    from lorawb.core.layout import link_refusal

    dataset.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".dataset.", suffix=".partial", dir=dataset.parent))
    seen: set[tuple[int, int]] = set()
    src_real, project_real = os.path.realpath(src), os.path.realpath(dataset.parent)

    def follow(folder: str) -> bool:
        if not os.path.islink(folder):
            return True
        target = os.path.realpath(folder)
        return link_refusal(target, src_real) is None and link_refusal(target, project_real) is None

    try:
        for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and follow(os.path.join(dirpath, d)))
            target = tmp / os.path.relpath(dirpath, src)
            target.mkdir(parents=True, exist_ok=True)
            for fname in sorted(filenames):
                source = Path(dirpath) / fname
                if fname.startswith(".") or not source.exists():  # hidden, or a broken symlink
                    continue
                shutil.copy2(source, target / fname)
        _normal_permissions(tmp)
        os.replace(tmp, dataset)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        where = exc.filename or src
        raise ProjectError(f"copying the images failed: {exc.strerror or exc}; nothing was kept", path=where) from exc
