"""What the fault tests share: a small project, lorawb run as its own process (killed at a chosen point),
and looks at the result (captions, leftovers) that never go through the code under test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from lorawb.core import fsutil
from lorawb.core.project import Project, init_project

ROOT = Path(__file__).resolve().parents[2]
TRIGGER = "zkx_mira"


def caption_project(tmp_path: Path, n: int = 60, images: bool = False) -> Project:
    """``n`` captions in two kohya folders (one CRLF), beside empty images (or real ones: ``images``)."""
    project = init_project(tmp_path / "p", trigger=TRIGGER)
    for k, folder in enumerate(["10_zkx_mira", "5_zkx_mira outfits"]):
        d = project.dataset_dir / folder
        d.mkdir()
        for i in range(n // 2):
            if images:
                Image.new("RGB", (64, 64), (i * 4 % 256, k * 90, 0)).save(d / f"img_{i:03d}.png")
            else:
                (d / f"img_{i:03d}.png").write_bytes(b"")  # nothing here decodes images
            text = f"{TRIGGER}, tag {i}, " + ", ".join(f"filler {j}" for j in range(20)) + "\n"
            (d / f"img_{i:03d}.txt").write_bytes(text.replace("\n", "\r\n" if k else "\n").encode())
    return Project.load(project.root)


def captions(project: Project) -> dict[str, bytes]:
    return {
        p.relative_to(project.root).as_posix(): p.read_bytes()
        for p in sorted(project.root.rglob("*.txt"))
        if ".lorawb" not in p.parts
    }


def leftovers(project: Project) -> list[str]:
    """Hidden temp files (a killed write's) anywhere in the project but .lorawb/.

    This process's own kept old versions are removed in the background: waited for first.
    """
    fsutil.wait_for_cleanup(timeout=30)
    return sorted(
        p.relative_to(project.root).as_posix()
        for p in project.root.rglob(".*")
        if p.is_file() and ".lorawb" not in p.parts
    )


def lorawb(
    project: Project | Path, *args: str, kill_at: str | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """``lorawb ARGS -p PROJECT`` in its own process; ``kill_at``: ``POINT:K`` (lorawb.core.fsutil.kill_point)."""
    root = project.root if isinstance(project, Project) else project
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LORAWB_TEST_KILL_AT", None)
    if kill_at is not None:
        env["LORAWB_TEST_KILL_AT"] = kill_at
    proc = subprocess.run(
        [sys.executable, "-m", "lorawb", *args, "-p", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"lorawb {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def python(code: str, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` (with ``sys.argv[1:] == args``) in its own process, killed at ``kill_at``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LORAWB_TEST_KILL_AT", None)
    if kill_at is not None:
        env["LORAWB_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)
