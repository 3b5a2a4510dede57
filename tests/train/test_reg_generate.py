"""`lorawb reg generate`: reg images drawn by the project's base model, captioned, varied over the
project's contexts and styles, in a detached job with progress; the trainer then uses them."""

from __future__ import annotations

import time

import pytest

from lorawb.cli import main
from lorawb.core.project import Project
from lorawb.errors import ConfigError
from lorawb.matrix import reggen
from lorawb.train import data as D
from lorawb.train.config import resolve_config
from tests.train.conftest import make_project

GROUPS = '\n[tags.groups]\ncontext = ["forest", "bar"]\nstyle = ["flat", "watercolor"]\n'


@pytest.fixture
def project(tmp_path, tiny_sd1):
    root = make_project(tmp_path / "p", tiny_sd1, n_images=2)
    text = (root / "lorawb.toml").read_text()
    (root / "lorawb.toml").write_text(text.replace("\n[model]", GROUPS + "\n[model]", 1))
    return Project.load(root)


def test_plan_varies_over_contexts_and_styles(project, tmp_path):
    plan = reggen.plan_reg(project, " woman ", count=5)
    assert plan.prompts == [
        "woman, forest, flat",
        "woman, forest, watercolor",
        "woman, bar, flat",
        "woman, bar, watercolor",
    ]
    assert plan.prompt(4) == "woman, forest, flat" and plan.out_dir.endswith("reg/1_woman")
    assert (plan.width, plan.height) == (32, 32)
    f = tmp_path / "prompts.txt"
    f.write_text("# mine\na photo of a {class}\n\n{class} on a beach\n")
    assert reggen.plan_reg(project, "man", prompts_file=f).prompts == ["a photo of a man", "man on a beach"]
    with pytest.raises(ConfigError, match="no prompts"):
        f.write_text("# nothing\n")
        reggen.plan_reg(project, "man", prompts_file=f)
    with pytest.raises(ConfigError, match="class word"):
        reggen.plan_reg(project, "a/b")
    with pytest.raises(ConfigError, match="--count"):
        reggen.plan_reg(project, "woman", count=0)


def test_generate_here_captions_every_image_and_the_trainer_uses_them(project):
    plan = reggen.plan_reg(project, "woman", count=3, steps=2)
    seen = []
    assert reggen.start_reg(project, plan, detach=False, progress=seen.append) == "finished"
    out = project.reg_dir / "1_woman"
    assert sorted(p.name for p in out.iterdir()) == [
        "reg_00000.png", "reg_00000.txt", "reg_00001.png", "reg_00001.txt", "reg_00002.png", "reg_00002.txt",
    ]  # fmt: skip
    assert (out / "reg_00001.txt").read_text() == "woman, forest, watercolor\n"
    assert [e["done"] for e in seen] == [1, 2, 3] and all(e["total"] == 3 for e in seen)
    status = reggen.reg_status(project)
    assert (status.state, status.done, status.total) == ("finished", 3, 3)
    # a rerun with more images draws only the missing ones
    (out / "reg_00001.png").unlink()
    more = reggen.plan_reg(project, "woman", count=4, steps=2)
    seen.clear()
    reggen.start_reg(project, more, detach=False, progress=seen.append)
    assert [e["path"] for e in seen] == ["reg_00001.png", "reg_00003.png"]
    info = D.load_dataset(resolve_config(project).dataset, 0)
    assert len(info.reg_items) == 4 and {it.caption.split(",")[0] for it in info.reg_items} == {"woman"}


@pytest.mark.slow
def test_cli_generates_detached_with_positional_or_p_project(project, capsys):
    root = str(project.root)
    assert main(["reg", "generate", "-p", root, "--class", "woman", "--count", "2", "--steps", "2"]) == 0
    assert "drawing in the background" in capsys.readouterr().out
    deadline = time.time() + 120
    while reggen.reg_status(project).state not in ("finished", "failed", "dead") and time.time() < deadline:
        time.sleep(0.5)
    assert reggen.reg_status(project).state == "finished", (
        project.root / ".lorawb/reg-generate/worker.out"
    ).read_text()
    assert main(["reg", "status", root]) == 0
    assert "finished, 2/2 images" in capsys.readouterr().out
    assert main(["reg", "generate", root, "--class", "woman", "--count", "2"]) == 0
    assert "2/2 in" in capsys.readouterr().out  # nothing left to draw
    assert main(["reg", "generate", root, "-p", "/elsewhere", "--class", "woman"]) == 2
