"""A two-character project from kohya folders, every count known: mira, tom and the pair.

10_zkx_mira/       10 images: forest, bar, beach x watercolor, photo; m09 carries tom's red cap
10_qvr_tom/         4 images, all forest (thin; all in one context); t03 lacks its trigger
5_zkx_mira+qvr_tom/ 3 images together (thin); j02 leads with tom
misc/               1 image naming both triggers in its caption (a joint image by caption)
other/              1 image of no character
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lorawb.core.project import Project, init_project

CHARACTERS = """
[characters]
balance = "equal"

[characters.mira]
trigger = "zkx_mira"
invariant = ["short blue hair", "orange jumpsuit"]

[characters.tom]
trigger = "qvr_tom"
invariant = ["red cap", "green coat"]
"""

MIRA = [
    "zkx_mira, forest, watercolor",
    "zkx_mira, forest, photo",
    "zkx_mira, bar, watercolor",
    "zkx_mira, bar, photo",
    "zkx_mira, beach, watercolor",
    "zkx_mira, beach, photo",
    "zkx_mira, forest, watercolor, smiling",
    "zkx_mira, bar, photo, sitting",
    "zkx_mira, beach, photo, running",
    "zkx_mira, forest, red cap, photo",  # tom's cap on mira alone: bleed
]
TOM = [
    "qvr_tom, forest, watercolor",
    "qvr_tom, forest, photo",
    "qvr_tom, forest, watercolor, sitting",
    "forest, photo",  # lacks its trigger
]
JOINT = [
    "zkx_mira, qvr_tom, bar, photo",
    "zkx_mira, qvr_tom, forest, watercolor",
    "qvr_tom, zkx_mira, beach, photo",  # the triggers in the wrong order
]


def write_images(folder: Path, captions: list[str], prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(captions):
        Image.new("RGB", (32, 32), (i * 20 % 256, ord(prefix) * 7 % 256, 90)).save(folder / f"{prefix}{i:02d}.png")
        (folder / f"{prefix}{i:02d}.txt").write_text(text, encoding="utf-8")


def write_folders(dataset: Path) -> None:
    write_images(dataset / "10_zkx_mira", MIRA, "m")
    write_images(dataset / "10_qvr_tom", TOM, "t")
    write_images(dataset / "5_zkx_mira+qvr_tom", JOINT, "j")
    write_images(dataset / "misc", ["zkx_mira, qvr_tom, bar, watercolor"], "x")
    write_images(dataset / "other", ["landscape, forest, photo"], "o")


def build(root: Path) -> Project:
    project = init_project(root, trigger="")
    write_folders(project.dataset_dir)
    text = (root / "lorawb.toml").read_text(encoding="utf-8")
    text = text.replace("min_resolution = 256", "min_resolution = 8")
    text = text.replace(
        "[tags.groups]\n", '[tags.groups]\ncontext = ["forest", "bar", "beach"]\nstyle = ["watercolor", "photo"]\n'
    )
    (root / "lorawb.toml").write_text(text + CHARACTERS, encoding="utf-8")
    return Project.load(root)
