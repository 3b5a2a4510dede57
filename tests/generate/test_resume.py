"""A detached generate job survives kill -9: the rerun draws only the missing candidates, each once,
and a candidate killed between its PNG and its record gets its record back from the PNG."""

from __future__ import annotations

import os
import signal

import pytest

from lorawb.errors import RunError
from lorawb.generate import job
from lorawb.matrix.folder import read_rows
from tests.matrix.test_process import wait_for

pytestmark = pytest.mark.slow


def test_kill_9_and_the_rerun_draws_each_candidate_once(gen_project):
    project = gen_project
    text = (
        (project.root / "lorawb.toml")
        .read_text()
        .replace("batch = 4", "batch = 1\ncount = 4")
        .replace("steps = 2\nbatch", "steps = 4\nbatch")
    )
    (project.root / "lorawb.toml").write_text(text)
    project = type(project).load(project.root)
    plan = job.plan_generate(project)
    assert plan.total == 16
    folder = job.GenerateJob.of(project)
    job.start_generate(project, plan, detach=True)
    assert folder.is_alive()  # alive from the moment the launcher returns
    with pytest.raises(RunError, match="candidates are already being generated"):
        job.start_generate(project, plan, detach=True)
    wait_for(lambda: len(list(project.inbox_dir.glob("gen-*.png"))) >= 2, what="the first candidates")
    os.kill(folder.pid(), signal.SIGKILL)  # no chance to finish anything
    wait_for(lambda: not folder.is_alive(), timeout=10, what="the killed process")
    assert job.generate_status(project).state == "dead"
    drawn = {p.name: p.stat().st_mtime_ns for p in project.inbox_dir.glob("gen-*.png")}
    assert 2 <= len(drawn) < 16, "the job finished before the kill: make it slower"
    # a candidate whose record line was lost (killed between the PNG and the record)
    log = folder.candidates_log
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]))
    lost = len(drawn) - len(read_rows(log, "candidate"))
    assert lost >= 1

    seen = []
    assert job.start_generate(project, job.plan_generate(project), detach=False, progress=seen.append) == "finished"
    assert len(seen) == 16 - len(drawn)  # only the missing ones
    assert all((project.inbox_dir / n).stat().st_mtime_ns == t for n, t in drawn.items())  # not drawn again
    rows = read_rows(log, "candidate")
    assert len(rows) == 16 and set(rows) == {c["id"] for c in plan.candidates}
    assert "had lost their records; restored from their PNGs" in folder.log.read_text()
