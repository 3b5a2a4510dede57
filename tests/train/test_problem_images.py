"""One verdict on every problem image: the trainer, the doctor and Triage agree, and a run names what it skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import EpsImagePlugin, Image

from lorawb.core.doctor import diagnose
from lorawb.core.project import Project
from lorawb.core.triage import Triage
from lorawb.train import data as D
from lorawb.train.config import resolve_config
from lorawb.train.events import read_events
from lorawb.train.process import start_run
from tests.core.problem_files import encoded, noise, png_header_only
from tests.train.conftest import make_project

pytestmark = pytest.mark.slow

FOLDER = "2_zkx_mira"
PROBLEMS = {  # file -> the start of the reason every view gives
    "cut_in_header.png": "truncated",
    "cut_after_header.png": "truncated",
    "cut_after_header.jpg": "truncated",
    "zero.jpg": "empty file (0 bytes)",
    "text.jpg": "not a PNG, JPEG",
    "ps.png": "not a PNG, JPEG",  # PostScript named .png: never handed to Ghostscript
    "bomb.png": "refused as a possible decompression bomb",
}
GOOD = ["cmyk.jpg", "gray16.png"]  # odd but usable: trained like the others


def write_problems(folder: Path) -> None:
    png = encoded(noise((64, 48), seed=5), "PNG")
    jpg = encoded(noise((64, 48), seed=6), "JPEG", quality=90)
    (folder / "cut_in_header.png").write_bytes(png[:20])
    (folder / "cut_after_header.png").write_bytes(png[: len(png) // 2])
    (folder / "cut_after_header.jpg").write_bytes(jpg[: len(jpg) // 2])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("just some text, not an image\n", encoding="utf-8")
    (folder / "ps.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    (folder / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    Image.new("CMYK", (40, 40), (0, 128, 128, 0)).save(folder / "cmyk.jpg", quality=90)
    Image.new("I;16", (40, 32), 40000).save(folder / "gray16.png")
    for name in [*PROBLEMS, *GOOD]:  # every one captioned: its caption must not hide the image's problem
        (folder / name).with_suffix(".txt").write_text(f"zkx_mira, {Path(name).stem}", encoding="utf-8")


@pytest.fixture
def problem_run_project(tmp_path, tiny_sd1, monkeypatch) -> Path:
    def no_ghostscript(*_a, **_k):
        raise AssertionError("Ghostscript was asked to open a dataset file")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_ghostscript)
    root = make_project(tmp_path / "proj", tiny_sd1, n_images=4)
    write_problems(root / "dataset" / FOLDER)
    return root


def test_trainer_doctor_and_triage_give_one_verdict_and_the_run_names_the_skipped(problem_run_project):
    root = problem_run_project
    project = Project.load(root)
    expected = {f"{FOLDER}/{name}" for name in PROBLEMS}

    doctor = dict(diagnose(project).unreadable)
    triage = {
        i.rel.removeprefix("dataset/"): i.error for i in Triage(project).items() if i.area == "dataset" and i.error
    }
    cfg = resolve_config(project, overrides=["train.max_steps=2"])
    info = D.load_dataset(cfg.dataset, cfg.train.seed)
    trainer = {p.relative_to(cfg.dataset.path).as_posix(): why for p, why in info.skipped}

    assert set(doctor) == set(triage) == set(trainer) == expected
    for rel in expected:
        assert doctor[rel] == triage[rel] == trainer[rel], rel
        assert doctor[rel].startswith(PROBLEMS[rel.split("/")[-1]]), (rel, doctor[rel])
    trained = {it.path.name for it in info.items}
    assert set(GOOD) <= trained and len(trained) == 4 + len(GOOD)

    run = start_run(project, cfg, detach=False)
    events = read_events(run.events)
    assert events[-1]["type"] == "status" and events[-1]["state"] == "finished"
    (skipped,) = [e for e in events if e["type"] == "skipped"]
    assert {(im["path"], im["reason"]) for im in skipped["images"]} == set(trainer.items())
    log = run.log.read_text(encoding="utf-8")
    for rel in expected:
        assert f"skipped {Path(cfg.dataset.path) / rel}: {trainer[rel]}" in log
    json.dumps(skipped)  # the event is plain JSON for any reader
