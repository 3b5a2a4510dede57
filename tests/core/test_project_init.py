"""`lorawb init`: the project folder, --images copy or --link, --trigger, and refusing to overwrite."""

from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image

from lorawb.cli import main
from lorawb.core.project import Project, init_project
from lorawb.errors import ConfigError, ProjectError


def make_images(folder, n=3):
    sub = folder / "10_mira"
    sub.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (64, 64), (i, 0, 0)).save(sub / f"{i}.png")
        (sub / f"{i}.txt").write_text(f"mira, {i}", encoding="utf-8")
    (folder / ".DS_Store").write_bytes(b"junk")
    return folder


def test_init_creates_the_folder_layout(tmp_path, capsys):
    assert main(["init", str(tmp_path / "p"), "--trigger", "zkx_mira"]) == 0
    root = tmp_path / "p"
    for sub in ("dataset", "inbox", "runs", "matrices"):
        assert (root / sub).is_dir()
    text = (root / "lorawb.toml").read_text(encoding="utf-8")
    assert text.startswith("# lorawb project settings.")
    assert 'trigger = "zkx_mira"' in text
    project = Project.load(root)
    assert (project.name, project.trigger) == ("p", "zkx_mira")
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"created {root}"
    assert "edit lorawb.toml to set the base model" in out


def test_init_copies_images(tmp_path, capsys):
    src = make_images(tmp_path / "pics")
    assert main(["init", str(tmp_path / "p"), "--images", str(src)]) == 0
    ds = tmp_path / "p" / "dataset"
    assert not ds.is_symlink()
    assert sorted(p.relative_to(ds).as_posix() for p in ds.rglob("*")) == [
        "10_mira",
        "10_mira/0.png",
        "10_mira/0.txt",
        "10_mira/1.png",
        "10_mira/1.txt",
        "10_mira/2.png",
        "10_mira/2.txt",
    ]  # hidden files are not copied
    assert (src / "10_mira" / "0.png").exists()  # a copy, the source is untouched
    assert "3 images, 3 with captions" in capsys.readouterr().out
    assert not [p for p in (tmp_path / "p").iterdir() if p.name.startswith(".dataset")]


def test_init_links_images(tmp_path, capsys):
    src = make_images(tmp_path / "pics")
    assert main(["init", str(tmp_path / "p"), "--images", str(src), "--link"]) == 0
    ds = tmp_path / "p" / "dataset"
    assert ds.is_symlink() and ds.resolve() == src.resolve()
    assert "dataset/ linked from" in capsys.readouterr().out


def test_init_copy_survives_a_symlink_loop(tmp_path):
    src = make_images(tmp_path / "pics")
    os.symlink("..", src / "10_mira" / "loop")
    init_project(tmp_path / "p", images=src)
    assert (tmp_path / "p" / "dataset" / "10_mira" / "0.png").exists()


def test_init_refuses_to_overwrite(tmp_path, capsys):
    init_project(tmp_path / "p", trigger="first")
    before = (tmp_path / "p" / "lorawb.toml").read_bytes()
    assert main(["init", str(tmp_path / "p"), "--trigger", "second"]) == 2
    err = capsys.readouterr().err
    assert "a project already exists here (lorawb.toml); nothing was changed" in err
    assert (tmp_path / "p" / "lorawb.toml").read_bytes() == before


def test_init_refuses_a_nonempty_dataset(tmp_path):
    src = make_images(tmp_path / "pics")
    (tmp_path / "p" / "dataset").mkdir(parents=True)
    (tmp_path / "p" / "dataset" / "mine.png").write_bytes(b"x")
    with pytest.raises(ProjectError, match="dataset/ already has files"):
        init_project(tmp_path / "p", images=src)
    assert not (tmp_path / "p" / "lorawb.toml").exists()
    assert (tmp_path / "p" / "dataset" / "mine.png").read_bytes() == b"x"


def test_init_argument_errors(tmp_path):
    with pytest.raises(ProjectError, match="--link needs --images"):
        init_project(tmp_path / "p", link=True)
    with pytest.raises(ProjectError, match="--images must be a folder"):
        init_project(tmp_path / "p", images=tmp_path / "nope")
    with pytest.raises(ConfigError, match="--trigger 'a, b': the trigger must be a single tag"):
        init_project(tmp_path / "p", trigger="a, b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProjectError, match="exists and is not a folder"):
        init_project(tmp_path / "file")
    assert not (tmp_path / "p").exists()  # nothing was created by a refused init


def test_init_keeps_quotes_in_names(tmp_path):
    project = init_project(tmp_path / "p", trigger='say "hi"', name='Mira "the" \\ cat')
    assert project.trigger == 'say "hi"'
    assert project.config.project.name == 'Mira "the" \\ cat'


def test_failed_copy_leaves_nothing(tmp_path, monkeypatch):
    src = make_images(tmp_path / "pics")
    real = shutil.copy2
    calls = []

    def flaky(a, b, **kw):
        calls.append(a)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(b))
        return real(a, b, **kw)

    monkeypatch.setattr(shutil, "copy2", flaky)
    with pytest.raises(ProjectError, match="copying the images failed: No space left on device; nothing was kept"):
        init_project(tmp_path / "p", images=src)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == []
    monkeypatch.setattr(shutil, "copy2", real)
    init_project(tmp_path / "p", images=src)  # a second try works
    assert len(list((tmp_path / "p" / "dataset" / "10_mira").iterdir())) == 6


def _kohya_folder(root, name="10_ohwx_knight", n=6):
    """A kohya training folder as a user has it: N_name/ with images and trigger-first tag captions."""
    folder = root / name
    folder.mkdir(parents=True)
    looks = ["red cloak, castle, sword", "red cloak, forest, shield", "castle, night, sword", "red cloak, castle"]
    for i in range(n):
        Image.new("RGB", (64, 48 + 8 * (i % 3)), (30 * i, 90, 160)).save(folder / f"k{i}.png")
        (folder / f"k{i}.txt").write_text(f"ohwx knight, {looks[i % 4]}\n", encoding="utf-8")
    return folder


def test_init_from_a_kohya_folder_keeps_repeats_trigger_and_its_own_tags(tmp_path, capsys):
    src = _kohya_folder(tmp_path / "train")
    old = os.umask(0o022)
    try:
        assert main(["init", str(tmp_path / "p"), "--images", str(src)]) == 0
    finally:
        os.umask(old)
    out = capsys.readouterr().out
    project = Project.load(tmp_path / "p")
    # the N_name folder is kept: its repeats stay 10
    assert sorted(p.name for p in (project.dataset_dir / "10_ohwx_knight").iterdir())[:2] == ["k0.png", "k0.txt"]
    assert "10_ohwx_knight/: 10 repeats" in out
    from lorawb.core.doctor import diagnose

    assert [(f.folder, f.repeats) for f in diagnose(project).folders] == [("10_ohwx_knight", 10)]
    # the trigger is proposed from the folder name, spelled as the captions spell it
    assert project.trigger == "ohwx knight"
    assert "from the folder name 10_ohwx_knight" in out
    # tag groups and prompts come from the dataset, not the toy world
    text = project.config_path.read_text()
    for toy in ("spaceship", "pixel art", "watercolor", '"bar"'):
        assert toy not in text
    assert project.config.tags.groups == {}  # a group is a choice of meaning: offered commented, not made up
    assert "# The dataset's most frequent tags: red cloak (5), castle (4), sword (3)" in text
    assert project.config.sample["prompts"] == [
        "{trigger}",
        "{trigger}, red cloak",
        "{trigger}, castle",
        "{trigger}, sword",
    ]
    # normal permissions, not mkdtemp's 0700
    for d in (project.dataset_dir, project.dataset_dir / "10_ohwx_knight"):
        assert d.stat().st_mode & 0o777 == 0o755, d


def test_init_from_a_folder_holding_kohya_folders_keeps_them_and_a_given_trigger_wins(tmp_path, capsys):
    _kohya_folder(tmp_path / "train", "10_ohwx_knight")
    _kohya_folder(tmp_path / "train", "3_ohwx_knight_extra", n=2)
    assert main(["init", str(tmp_path / "p"), "--images", str(tmp_path / "train"), "--trigger", "zkx"]) == 0
    project = Project.load(tmp_path / "p")
    assert project.trigger == "zkx"
    assert sorted(p.name for p in project.dataset_dir.iterdir()) == ["10_ohwx_knight", "3_ohwx_knight_extra"]
    assert "3_ohwx_knight_extra/: 3 repeats" in capsys.readouterr().out


def test_init_without_images_leaves_commented_examples(tmp_path):
    project = init_project(tmp_path / "p", trigger="zkx")
    text = project.config_path.read_text()
    assert project.config.tags.groups == {} and "# context = [" in text
    assert project.config.sample["prompts"] == ["{trigger}"]
    assert "spaceship" not in text


def test_init_from_several_kohya_folders_proposes_one_character_per_folder(tmp_path, capsys):
    from lorawb.core.characters import characters_of
    from tests.core.two_characters import write_folders

    write_folders(tmp_path / "imgs")
    assert main(["init", str(tmp_path / "proj"), "--images", str(tmp_path / "imgs")]) == 0
    out = capsys.readouterr().out
    assert "2 characters, one per kohya folder" in out and "    mira: trigger 'zkx_mira', 10_zkx_mira/" in out
    p = Project.load(tmp_path / "proj")
    # In the order the joint folder 5_zkx_mira+qvr_tom names them; joint folders are no character.
    assert [(c.name, c.trigger, c.folders) for c in characters_of(p.config)] == [
        ("mira", "zkx_mira", ("10_zkx_mira",)),
        ("tom", "qvr_tom", ("10_qvr_tom",)),
    ]
    assert p.trigger == ""
    assert p.config.sample["prompts"][:2] == ["zkx_mira", "qvr_tom"]


def test_a_character_is_never_named_like_a_setting_of_characters(tmp_path):
    from lorawb.core.characters import characters_of

    _kohya_folder(tmp_path / "imgs", "10_zkx_balance")
    _kohya_folder(tmp_path / "imgs", "10_qvr_tom")
    assert main(["init", str(tmp_path / "proj"), "--images", str(tmp_path / "imgs")]) == 0
    chars = characters_of(Project.load(tmp_path / "proj").config)
    assert sorted((c.name, c.trigger) for c in chars) == [("tom", "qvr_tom"), ("zkx_balance", "zkx_balance")]


def test_init_from_one_kohya_folder_stays_a_one_character_project(tmp_path):
    from tests.core.two_characters import MIRA, write_images

    write_images(tmp_path / "imgs" / "10_zkx_mira", MIRA, "m")
    assert main(["init", str(tmp_path / "proj"), "--images", str(tmp_path / "imgs")]) == 0
    p = Project.load(tmp_path / "proj")
    assert p.trigger == "zkx_mira" and p.config.characters.members == {}
    assert "[characters" not in (tmp_path / "proj" / "lorawb.toml").read_text(encoding="utf-8")
