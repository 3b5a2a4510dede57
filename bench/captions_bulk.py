"""Time a bulk caption edit: build + apply + undo of an `add` and a `replace` over N captions.

    PYTHONPATH=. python bench/captions_bulk.py [-n 10000] [--dir /dev/shm] [--keep DIR]

Generates N images (empty files: nothing here decodes them) with tag captions in a
temp project (under --dir: a tmpfs such as /dev/shm separates the code's own time
from the disk's), then prints the time of each phase. The target (docs/captions.md): a bulk
tag edit over 10,000 captions and its undo in about a second.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from lorawb.core import caption_history, caption_ops
from lorawb.core.project import init_project

TAGS = ["1girl", "red scarf", "smiling", "short hair", "jacket", "night", "rain", "looking at viewer", "outdoors"]
CONTEXTS = ["forest", "spaceship", "bar", "beach"]
STYLES = ["watercolor", "pixel art", "photo", "sketch"]


def generate(root: Path, n: int) -> None:
    project = init_project(root, trigger="zkx_mira")
    rng = random.Random(1)
    folder = project.dataset_dir / "10_zkx_mira"
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"img_{i:05d}.png").write_bytes(b"")
        tags = ["zkx_mira", rng.choice(CONTEXTS), rng.choice(STYLES), *rng.sample(TAGS, 4)]
        (folder / f"img_{i:05d}.txt").write_text(", ".join(tags), encoding="utf-8")


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"  {label:<8} {time.perf_counter() - t0:7.3f} s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000, help="number of captions (default 10,000)")
    ap.add_argument("--dir", help="make the temp project under this folder (default: the system temp dir)")
    ap.add_argument("--keep", help="generate into this folder and keep it")
    args = ap.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lorawb-bench-", dir=args.dir)) / "project"
    try:
        t0 = time.perf_counter()
        generate(tmp, args.n)
        print(f"generated {args.n} captions in {time.perf_counter() - t0:.1f} s ({tmp})")
        from lorawb.core.project import Project

        project = Project.load(tmp)
        ops = [
            caption_ops.AddTag("masterpiece", at="after-trigger", trigger="zkx_mira"),
            caption_ops.ReplaceTag("red scarf", "blue scarf"),
        ]
        for op in ops:
            print(op.label)
            t_all = time.perf_counter()
            cs = timed("build", lambda op=op: caption_ops.build_changeset(project, op))
            res = timed("apply", lambda cs=cs: caption_history.apply_changeset(project, cs))
            und = timed("undo", lambda: caption_history.undo(project))
            total = time.perf_counter() - t_all
            assert len(res.written) == len(cs) and not res.conflicts, res.conflicts[:3]
            assert len(und[0].written) == len(cs) and not und[0].conflicts
            print(f"  {len(cs)} files changed; build+apply+undo {total:.3f} s")
    finally:
        if not args.keep:
            shutil.rmtree(tmp.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
