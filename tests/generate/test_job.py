"""A generate job: captioned candidates in the inbox with their provenance (PNG text and a record),
skip-existing (triaged candidates too), regeneration from the record, the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from lorawb.cli import main
from lorawb.core.project import Project
from lorawb.core.triage import Triage
from lorawb.errors import ConfigError
from lorawb.generate import job
from lorawb.train.events import read_events


def drawn_here(project, **opts):
    plan = job.plan_generate(project, job.GenerateOptions(**opts))
    seen = []
    assert job.start_generate(project, plan, detach=False, progress=seen.append) == "finished"
    return plan, seen


def test_candidates_come_captioned_with_their_provenance(gen_project):
    project = gen_project
    plan, seen = drawn_here(project)
    assert plan.total == 4 and [e["done"] for e in seen] == [1, 2, 3, 4]
    pngs = sorted(project.inbox_dir.glob("gen-*.png"))
    assert [p.stem for p in pngs] == sorted(c["id"] for c in plan.candidates)
    assert pngs[0].stem.startswith("gen-bar-flat-")
    for png in pngs:
        assert png.with_suffix(".txt").read_text().startswith("zkx_mira, ")
    c = next(c for c in plan.candidates if c["values"] == {"context": "bar", "style": "watercolor"})
    png = project.inbox_dir / f"{c['id']}.png"
    assert png.with_suffix(".txt").read_text() == "zkx_mira, bar, watercolor\n"
    with Image.open(png) as im:
        text = dict(im.text)
    assert text["parameters"].startswith("red outfit, bar, watercolor\nSteps: 2, Sampler: DDIM, CFG scale: 1.5, Seed: ")
    rec = json.loads(text["lorawb"])
    assert rec["id"] == png.stem and rec["kind"] == "generate" and rec["file"] == f"inbox/{png.name}"
    assert rec["params"]["seed"] == c["seed"] and rec["params"]["prompt"] == "red outfit, bar, watercolor"
    assert rec["values"] == {"context": "bar", "style": "watercolor"} and rec["helper"] is None
    assert rec["model"]["path"] and rec["batch"] and rec["versions"]["diffusers"]
    rows = [e for e in read_events(job.GenerateJob.of(project).candidates_log) if e["type"] == "candidate"]
    assert len(rows) == 4 and {r["id"] for r in rows} == {p.stem for p in pngs}
    s = job.generate_status(project)
    assert (s.state, s.done, s.total) == ("finished", 4, 4)


def test_a_rerun_draws_only_what_is_missing_and_never_what_was_triaged(gen_project):
    project = gen_project
    plan, _ = drawn_here(project)
    ids = [c["id"] for c in plan.candidates]
    t = Triage(project)
    try:
        t.keep(f"inbox/{ids[0]}.png", folder="2_zkx_mira")
        t.reject(f"inbox/{ids[1]}.png")
    finally:
        t.close()
    assert (project.dataset_dir / "2_zkx_mira" / f"{ids[0]}.png").is_file()
    shutil.rmtree(project.root / ".lorawb")  # the records are gone too: the files still say what exists
    before = {p.name: p.stat().st_mtime_ns for p in project.inbox_dir.glob("gen-*.png")}
    more, seen = drawn_here(project, count=2)
    assert more.total == 8 and len(seen) == 4  # only the second image of each combination
    assert all(c["number"] == 1 for c in more.candidates if c["id"] not in ids)
    assert {e["path"].split("/")[-1][:-4] for e in seen} == {c["id"] for c in more.candidates} - set(ids)
    assert all((project.inbox_dir / n).stat().st_mtime_ns == t for n, t in before.items())
    assert not (project.inbox_dir / f"{ids[0]}.png").exists()  # kept: not drawn again


def test_a_candidate_regenerates_from_its_record(gen_project, tmp_path):
    project = gen_project
    plan, _ = drawn_here(project)
    cid = plan.candidates[2]["id"]
    png = project.inbox_dir / f"{cid}.png"
    with Image.open(png) as im:
        before = im.convert("RGB").tobytes()
    assert job.regenerate(project, cid).tobytes() == before  # its batch redrawn: bit for bit
    shutil.rmtree(project.root / ".lorawb")  # the PNG's own text is enough
    assert job.find_record(project, str(png))["id"] == cid
    assert main(["generate", str(project.root), "--regen", f"inbox/{cid}.png", "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").is_file()
    with pytest.raises(Exception, match="no record of candidate"):
        job.find_record(project, "dataset/2_zkx_mira/img_000.png")


def test_the_cli_says_what_it_will_draw_and_how_far_it_is(gen_project, capsys):
    root = str(gen_project.root)
    assert main(["generate", root, "--status"]) == 0
    assert "no generate job" in capsys.readouterr().out
    assert main(["generate", "-p", root, "--dry-run", "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert "candidates of 'zkx_mira': 0/12 drawn, into inbox/" in out
    assert "e.g. prompt 'red outfit, forest, flat', caption 'zkx_mira, forest, flat'" in out
    assert main(["generate", root, "--dry-run", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == 4 and data["missing"] == 4
    assert main(["generate", root]) == 0
    assert "generate finished" in capsys.readouterr().out
    assert main(["generate", root, "--status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["state"], status["done"], status["total"]) == ("finished", 4, 4)
    text = (gen_project.root / "lorawb.toml").read_text().replace('description = "red outfit"', "")
    (gen_project.root / "lorawb.toml").write_text(text)
    assert main(["generate", root]) == 2
    assert "describe the character" in capsys.readouterr().err


def test_a_lora_fills_the_datasets_gaps_with_the_trigger(trained_project, tmp_path):
    from lorawb.matrix.lorafile import run_checkpoints
    from lorawb.train.runfolder import list_runs
    from tests.generate.conftest import add_sheet
    from tests.train.conftest import write_images

    root = tmp_path / "proj"
    shutil.copytree(trained_project, root, symlinks=True)
    write_images(root / "dataset" / "2_zkx_mira", 4, start=4)
    add_sheet(root, "lora_weight = 0.8\n")
    project = Project.load(root)
    lora = run_checkpoints(list_runs(root / "runs")[-1])[-1].path
    plan = job.plan_generate(project, job.GenerateOptions(lora=str(lora)))
    # the dataset's captions name forest/spaceship/bar/beach twice, all watercolor: the flat pairs are the gaps
    assert {tuple(c["values"].values()) for c in plan.candidates} == {("forest", "flat"), ("bar", "flat")}
    assert plan.notes == ["2 context × style pairs the dataset lacks (empty or thin)"]
    assert all(c["prompt"].startswith("zkx_mira, ") for c in plan.candidates)
    assert job.start_generate(project, plan, detach=False) == "finished"
    rec = job.find_record(project, plan.candidates[0]["id"])
    assert rec["params"]["lora"]["path"].startswith("runs/") and rec["params"]["weight"] == 0.8
    with Image.open(root / rec["file"]) as im:
        assert f"<lora:{lora.stem}:0.8>" in im.text["parameters"]
    with pytest.raises(ConfigError, match="no such file"):
        job.plan_generate(project, job.GenerateOptions(lora="nope.safetensors"))


def test_generate_can_be_queued(gen_project, tmp_path, monkeypatch, capsys):
    from lorawb.queue import store
    from tests.queue.conftest import stop_runner_and_jobs

    monkeypatch.setenv("LORAWB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    root = str(gen_project.root)
    try:
        assert main(["queue", "pause"]) == 0
        capsys.readouterr()
        assert main(["generate", root, "--queue"]) == 0
        out, err = capsys.readouterr()
        assert out == "1\n" and "candidates of 'zkx_mira': 0/4 drawn" in err  # stdout: the job id alone
        job = store.load(tmp_path / "state" / "queue").get("1")
        assert (job.kind, job.state) == ("generate", "queued")
        assert job.folder == str(job_folder := (gen_project.root / ".lorawb" / "generate").resolve())
        assert json.loads((job_folder / "plan.json").read_text())["module"] == "lorawb.generate.job"
        assert main(["queue", "add", "--", "generate", root]) == 2
        assert "a generate job is already in the queue as job 1" in capsys.readouterr().err
    finally:
        stop_runner_and_jobs(tmp_path / "state" / "queue")
