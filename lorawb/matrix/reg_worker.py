"""`python -m lorawb.matrix.reg_worker JOB_DIR`: the detached regularisation-image process.

Started by lorawb.matrix.reggen in a new session; everything it has to say goes to the job folder.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorawb.matrix.reg_worker")
    parser.add_argument("job_dir")
    parser.add_argument("--lock-fd", type=int, default=None, help="the job lock, taken by the launcher")
    args = parser.parse_args(argv)
    from lorawb.matrix.reggen import worker_main

    return worker_main(args.job_dir, args.lock_fd)


if __name__ == "__main__":
    sys.exit(main())
