"""`python -m lorawb.matrix.worker MATRIX_DIR`: the detached matrix process.

Started by lorawb.matrix.process in a new session (or by `accelerate launch` for several
processes); everything it has to say goes to the matrix folder.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorawb.matrix.worker")
    parser.add_argument("matrix_dir")
    parser.add_argument("--lock-fd", type=int, default=None, help="the matrix lock, taken by the launcher")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded
    from lorawb.errors import LorawbError
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.runner import run_matrix

    try:
        run_matrix(MatrixFolder(Path(args.matrix_dir).resolve()), lock_fd=args.lock_fd)
    except LorawbError as exc:
        print(f"lorawb: {exc}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
