"""What a new user meets on the command line (subprocess, as they run it): the doctor's exit status,
a folder of images named where a project was expected, image names in `triage`, help texts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from lorawb.cli import PROJECT_HELP


def lorawb(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lorawb", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def test_doctor_exits_non_zero_when_it_finds_problems(sample_project):
    clean = lorawb("doctor", str(sample_project))
    assert clean.returncode == 0 and clean.stdout.rstrip().endswith("no problems found")
    (sample_project / "dataset" / "10_zkx_mira" / "orphan.txt").write_text("zkx_mira, forest\n")
    found = lorawb("doctor", str(sample_project))
    assert found.returncode == 1 and found.stdout.rstrip().endswith("1 problem found")
    assert lorawb("doctor", str(sample_project), "--json").returncode == 1
    assert "Exit status: 0 no problems, 1 problems found" in " ".join(lorawb("doctor", "--help").stdout.split())


def test_a_folder_of_images_is_offered_as_a_dataset(sample_project, tmp_path):
    images = tmp_path / "10_ohwx_knight"
    images.mkdir()
    for src in sorted((sample_project / "dataset" / "10_zkx_mira").glob("mira_0[1-3]_*")):
        shutil.copy(src, images / src.name)
    doctor = lorawb("doctor", "10_ohwx_knight", cwd=tmp_path)
    assert doctor.returncode == 2
    assert "`lorawb init ohwx_knight --images 10_ohwx_knight`" in doctor.stderr
    init = lorawb("init", "10_ohwx_knight", cwd=tmp_path)
    assert init.returncode == 2 and "holds 3 images" in init.stderr
    assert "`lorawb init ohwx_knight --images 10_ohwx_knight`" in init.stderr
    assert not (images / "lorawb.toml").exists() and not (images / "dataset").exists()  # nothing made beside them
    made = lorawb("init", "ohwx_knight", "--images", "10_ohwx_knight", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert len(list((tmp_path / "ohwx_knight" / "dataset" / "10_ohwx_knight").glob("*.png"))) == 3


def test_triage_takes_an_image_by_its_file_name(sample_project):
    out = lorawb("triage", str(sample_project), "--reject", "mira_01_forest.png")
    assert out.returncode == 0, out.stderr
    assert (sample_project / "dataset" / "rejected" / "10_zkx_mira" / "mira_01_forest.png").exists()
    twice = sample_project / "dataset" / "1_other" / "mira_02_forest.png"
    twice.parent.mkdir()
    shutil.copy(sample_project / "dataset" / "10_zkx_mira" / "mira_02_forest.png", twice)
    out = lorawb("triage", str(sample_project), "--reject", "mira_02_forest.png")
    assert out.returncode == 2 and "names 2 images" in out.stderr and "1_other/mira_02_forest.png" in out.stderr
    out = lorawb("triage", str(sample_project), "--flag", "nope.png")
    assert out.returncode == 2 and "no image 'nope.png' in this project" in out.stderr


def test_reg_generate_help_names_the_project_as_every_command_does():
    out = lorawb("reg", "generate", "--help")
    assert out.returncode == 0
    assert "PROJECT_OPT" not in out.stdout
    assert " ".join(PROJECT_HELP.split()) in " ".join(out.stdout.split())


def test_the_doctor_says_when_a_low_res_image_is_the_models_own_size(sample_project):
    shutil.move(sample_project / "inbox" / "cand_06.png", sample_project / "dataset" / "10_zkx_mira" / "cand_06.png")
    out = lorawb("doctor", str(sample_project))
    assert out.returncode == 1
    assert "cand_06.png (32x32: under 64 px, but the model's own size (32 px): as generated)" in out.stdout
