"""`python -m lorawb.matrix.job_worker JOB_DIR`: the detached process of an image job (reg images, generate).

Started by lorawb.matrix.imagejob in a new session; the job's plan.json says which module reads
it, and everything the worker has to say goes to the job folder.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorawb.matrix.job_worker")
    parser.add_argument("job_dir")
    parser.add_argument("--lock-fd", type=int, default=None, help="the job lock, taken by the launcher")
    args = parser.parse_args(argv)
    from lorawb.matrix.imagejob import worker_main

    return worker_main(args.job_dir, args.lock_fd)


if __name__ == "__main__":
    sys.exit(main())
