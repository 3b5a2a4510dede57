"""A generated dataset of a few hundred captions for the caption engine tests.

Deterministic (seeded) and varied the way real datasets are: weights, CRLF and BOM
files, a cp1252 file, sentence captions, captions missing the trigger, duplicate and
empty tags, a ``.caption`` file, images with no caption file, a rejected/ folder.
"""

from __future__ import annotations

import random
from pathlib import Path

from lorawb.core.project import Project, init_project

TRIGGER = "zkx_mira"
CONTEXTS = ["forest", "spaceship", "bar", "beach"]
STYLES = ["watercolor", "pixel art", "photo", "sketch"]
EXTRAS = ["1girl", "red scarf", "smiling", "looking at viewer", "short hair", "jacket", "night", "rain"]
# A real (tiny) PNG so anything that decodes the images can.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108020000009077"
    "53de0000000c4944415408d763f8cfc0f01f0005000201e2219bc90000000049454e44ae426082"
)


def make_project(root: Path, n: int = 300, seed: int = 7) -> Project:
    """A project with ``n`` captioned images in two kohya folders (plus the odd cases listed above)."""
    project = init_project(root, trigger=TRIGGER)
    project.save_setting("tags.groups", {"context": CONTEXTS, "style": STYLES})  # the composition groups
    rng = random.Random(seed)
    ds = project.dataset_dir
    for i in range(n):
        folder = ds / ("10_zkx_mira" if i % 3 else "5_extra")
        folder.mkdir(parents=True, exist_ok=True)
        img = folder / f"img_{i:04d}.png"
        img.write_bytes(PNG)
        if i % 50 == 49:
            continue  # no caption file
        tags = []
        if i % 10 != 9:  # every 10th caption lacks the trigger
            tags.append(TRIGGER)
        if i % 17 != 16:
            tags.append(CONTEXTS[i % 4])
        style = STYLES[(i // 4) % 4]
        # Gaps for the composition table: no bar x pixel art at all, beach x sketch thin (i % 16 == 15).
        if i % 16 < 15 and not (CONTEXTS[i % 4] == "bar" and style == "pixel art"):
            tags.append(style)
        tags += rng.sample(EXTRAS, rng.randint(1, 3))
        if i % 25 == 3:
            tags.append("(red scarf:1.2)" if "red scarf" not in tags else "smiling")
        if i % 40 == 5:
            tags.append(tags[-1])  # a duplicate
        text = ", ".join(tags)
        if i % 30 == 7:
            text = text.replace(", ", ",, ", 1) + ","  # empty tags
        if i % 37 == 11:
            text = f"{TRIGGER} standing in a {CONTEXTS[i % 4]} at dusk, painted in {STYLES[(i // 4) % 4]}"
            text = text.replace(",", "")  # a sentence caption: one tag
        if i % 2:
            text += "\n"
        cap = img.with_suffix(".caption" if i == 8 else ".txt")
        if i % 23 == 4:
            cap.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
        elif i % 29 == 6:
            cap.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
        elif i == 10:
            cap.write_bytes((text + ", caf\xe9").encode("cp1252"))
        else:
            cap.write_text(text, encoding="utf-8", newline="")
    rej = ds / "rejected"
    rej.mkdir(exist_ok=True)
    (rej / "bad.png").write_bytes(PNG)
    (rej / "bad.txt").write_text("forest, blurry", encoding="utf-8")
    return Project.load(root)
