"""Run by test_disk_full.py inside a private mount namespace, on a small tmpfs: a real full disk.

Usage: python on_a_full_disk.py MOUNTED_DIR. Prints one JSON object: per scenario, the exit
code and stderr of each lorawb command and whether the captions stayed as they were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.faults.helpers import caption_project, captions, leftovers  # noqa: E402


def lorawb(root: Path, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "lorawb", *args, "-p", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return {"rc": proc.returncode, "err": proc.stderr}


def fill(mount: Path, leave: int) -> Path:
    """Fill the file system, then give back ``leave`` bytes."""
    filler = mount / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    try:
        with open(filler, "ab") as fh:  # the last partial block
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:
        pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


def main() -> None:
    mount = Path(sys.argv[1])
    project = caption_project(mount, n=200)
    root = project.root
    out: dict = {}
    out["setup"] = lorawb(root, "captions", "add", "first")  # a history to undo, an index
    before = captions(project)

    filler = fill(mount, 150 * 1024)  # ~150 KB free: the "writes the captions, then fails"
    out["add_150k"] = lorawb(root, "captions", "add", "masterpiece")
    out["add_150k"]["same"] = captions(project) == before

    fill(mount, 0)  # nothing free
    for name, args in {
        "add": ("captions", "add", "more"),
        "history": ("captions", "history"),
        "undo": ("captions", "undo"),
        "reject": ("triage", "--reject", "dataset/10_zkx_mira/img_001.png"),
    }.items():
        out[name] = lorawb(root, *args)
        out[name]["same"] = captions(project) == before
        out[name]["image_home"] = (root / "dataset/10_zkx_mira/img_001.png").exists()

    filler.unlink()
    out["after"] = lorawb(root, "captions", "undo")
    out["leftovers"] = leftovers(project)
    out["undone"] = all(b"first" not in v for v in captions(project).values())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
