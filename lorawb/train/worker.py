"""`python -m lorawb.train.worker RUN_DIR [--resume]`: the detached training process.

Started by lorawb.train.process in a new session (or by `accelerate launch` for
several GPUs); everything it has to say goes to the run folder.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorawb.train.worker")
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--lock-fd", type=int, default=None, help="the run lock, taken by the launcher")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded during a run
    from lorawb.train.trainer import main_worker

    return main_worker(args.run_dir, resume=args.resume, lock_fd=args.lock_fd)


if __name__ == "__main__":
    sys.exit(main())
