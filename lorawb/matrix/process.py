"""Starting and stopping matrix runs: the API the CLI and the Matrix tab call (no torch here).

A detached matrix run is ``python -m lorawb.matrix.worker MATRIX_DIR`` in its own session,
started by the same launcher as training runs (lorawb.train.detached: the lock is taken
before the worker starts and handed to it, output in ``worker.out``). With
``num_processes > 1`` the worker is started through ``accelerate launch`` and the cells are
spread over the processes. A rerun (or a resume after a stop or a crash) draws only the
cells that are missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lorawb.errors import RunError
from lorawb.matrix.folder import MatrixFolder
from lorawb.train import detached

WORKER_MODULE = "lorawb.matrix.worker"


def start_matrix(
    folder: MatrixFolder,
    *,
    detach: bool = True,
    num_processes: int = 1,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> str | None:
    """Generate the matrix's missing cells: detached (returns at once, None) or here (returns the final state)."""
    if folder.is_alive():
        raise RunError("this matrix is already being generated", path=folder.path, hint=folder.busy_hint())
    if num_processes < 1:
        raise RunError("--num-processes must be at least 1")
    if not detach:
        if num_processes > 1:
            raise RunError(
                "several processes need a detached run (they are launched through accelerate)", hint="add --detach"
            )
        from lorawb.matrix.runner import run_matrix

        return run_matrix(folder, progress=progress)
    detached.spawn(folder.create(), WORKER_MODULE, [], num_processes)
    return None


def stop_matrix(folder: MatrixFolder, wait: float = 0.0) -> bool:
    """Ask a running matrix to stop after its current batch; True when it has stopped (within ``wait`` s)."""
    return detached.wait_stopped(folder, wait)
