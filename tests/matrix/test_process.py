"""Matrix runs as detached processes: stop, a kill, and the rerun that draws only what is missing;
two processes through Accelerate on CPU."""

from __future__ import annotations

import os
import signal
import time

import pytest

from lorawb.errors import RunError
from lorawb.matrix.folder import MatrixFolder, read_rows, read_status
from lorawb.matrix.process import start_matrix, stop_matrix
from lorawb.matrix.runner import run_matrix
from tests.matrix.conftest import write_matrix

pytestmark = pytest.mark.slow


def wait_for(cond, timeout: float = 90.0, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_stop_kill_and_rerun_skip_the_cells_that_exist(trained_project, tmp_path):
    import shutil

    root = tmp_path / "proj"
    shutil.copytree(trained_project, root, symlinks=True)
    folder = MatrixFolder(write_matrix(root, "killme", steps=2, batch=1))
    total = 18
    start_matrix(folder, detach=True)
    assert folder.is_alive()  # alive from the moment the launcher returns
    with pytest.raises(RunError, match="already being generated"):
        start_matrix(folder, detach=True)
    wait_for(lambda: len(folder.done_ids()) >= 1, what="the first cell")
    assert stop_matrix(folder, wait=60)
    st = read_status(folder)
    assert st.state == "stopped" and 1 <= len(folder.done_ids()) < total

    start_matrix(folder, detach=True)
    have = len(folder.done_ids())
    wait_for(lambda: len(folder.done_ids()) > have, what="a cell of the second process")
    os.kill(folder.pid(), signal.SIGKILL)
    wait_for(lambda: not folder.is_alive(), timeout=10, what="the killed process")
    assert read_status(folder).display_state == "dead"
    drawn = {p.name: p.stat().st_mtime_ns for p in folder.cells_dir.glob("*.png")}
    assert len(drawn) < total

    assert run_matrix(folder) == "finished"
    assert len(folder.done_ids()) == total and len(read_rows(folder.cells_log, "cell")) == total
    assert all(folder.cell_png(n[:-4]).stat().st_mtime_ns == t for n, t in drawn.items())  # not drawn again


def test_two_processes_share_the_cells_through_accelerate(trained_project, tmp_path):
    import shutil

    root = tmp_path / "proj"
    shutil.copytree(trained_project, root, symlinks=True)
    folder = MatrixFolder(write_matrix(root, "two", steps=1, batch=2))
    start_matrix(folder, detach=True, num_processes=2)
    wait_for(
        lambda: read_status(folder).state in ("finished", "failed") and not folder.is_alive(),
        timeout=150,
        what="the matrix",
    )
    st = read_status(folder)
    assert st.state == "finished", (folder.path / "worker.out").read_text()[-2000:]
    rows = read_rows(folder.cells_log, "cell")
    assert len(rows) == 18 and {r["rank"] for r in rows.values()} == {0, 1}
    assert st.done == 18  # each cell drawn once, by one of the two
