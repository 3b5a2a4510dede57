"""Odd input that used to block or crash lorawb: a 240-character file name, a 1 MB caption, names that
would become paths outside their folder, matrix values no one means (inf, nan, 1e308), and a newline in
a file name splitting the doctor's output."""

from __future__ import annotations

import pytest

from lorawb.core import caption_history as ch
from lorawb.core import caption_ops as co
from lorawb.core import fsutil, layout
from lorawb.core.doctor import diagnose, render_text
from lorawb.core.index import scan_folder
from lorawb.errors import CaptionError, ConfigError
from lorawb.matrix.reggen import class_folder
from lorawb.matrix.spec import load_spec
from tests.faults.helpers import TRIGGER, caption_project, captions, leftovers


def test_a_240_character_name_does_not_block_a_bulk_edit(tmp_path):
    project = caption_project(tmp_path, n=4)
    long = project.dataset_dir / "10_zkx_mira" / ("a" * 240 + ".png")
    long.write_bytes(b"")
    long.with_suffix(".txt").write_text(f"{TRIGGER}, long")
    result = ch.apply_changeset(project, co.build_changeset(project, co.AddTag("masterpiece")))
    assert result.conflicts == [] and len(result.written) == 5
    assert long.with_suffix(".txt").read_text() == f"{TRIGGER}, long, masterpiece"
    assert fsutil.wait_for_cleanup(timeout=30) and leftovers(project) == []
    assert len(fsutil.temp_name(long).name) < 32  # the temp name is short whatever the file's name


def test_a_huge_caption_is_never_read_whole_and_the_doctor_and_the_trainer_name_it(tmp_path, monkeypatch):
    project = caption_project(tmp_path, n=4, images=True)
    big = project.dataset_dir / "10_zkx_mira" / "img_000.txt"
    big.write_bytes(b"zkx_mira, " + b"tag, " * (1024 * 1024 // 5))  # 1 MB
    read: list[int] = []
    real = fsutil.os.read
    monkeypatch.setattr(fsutil.os, "read", lambda fd, n: (read.append(n), real(fd, n))[1])
    from lorawb.core.dataset import refuse_oversized_captions

    with pytest.raises(fsutil.TooLargeError, match="over the 64 KB"):
        fsutil.read_text(big, limit=layout.CAPTION_MAX_BYTES)
    assert sum(read) == 0  # refused from its size, not read
    monkeypatch.undo()

    report = diagnose(project)
    assert report.captions_too_large == [("10_zkx_mira/img_000.txt", big.stat().st_size)]
    assert "captions over 64 KB, never read (a run refuses them) (1):" in render_text(report)
    with pytest.raises(CaptionError, match="over the 64 KB a caption may hold") as err:
        refuse_oversized_captions(scan_folder(project.dataset_dir))  # what the trainer is to call
    assert err.value.path == big
    before = big.read_bytes()
    result = ch.apply_changeset(project, co.build_changeset(project, co.AddTag("masterpiece")))
    assert len(result.written) == 3 and [c.rel for c in result.conflicts] == ["dataset/10_zkx_mira/img_000.txt"]
    assert big.read_bytes() == before  # never rewritten from a part of it


@pytest.mark.parametrize(
    "name", ["../../../X", "/etc/x", "a/b", "..", "x\ny", "x\0y", ".hidden", "a" * 201, "", "C:\\x"]
)
def test_a_name_that_becomes_a_path_stays_inside_its_folder(tmp_path, name):
    from lorawb.core.confine import name_in

    with pytest.raises(ConfigError, match="save.name = "):
        name_in(tmp_path, name, "save.name")


def test_names_that_stay_names_pass(tmp_path):
    from lorawb.core.confine import name_in

    assert name_in(tmp_path, "zkx_mira v2-final.1", "save.name") == tmp_path / "zkx_mira v2-final.1"


@pytest.mark.parametrize("word", ["x\0y", "a" * 250, "../up"])
def test_a_reg_class_is_a_name_inside_reg(word):
    with pytest.raises(ConfigError, match="--class"):
        class_folder(word)


@pytest.mark.parametrize(
    "line, key",
    [
        ("weight = [0, inf]", "axes.weight"),
        ("weight = [nan]", "axes.weight"),
        ("weight = [1e308]", "axes.weight"),
        ("weight = [-1e308]", "axes.weight"),
        ("cfg = [inf]", "axes.cfg"),
        ("steps = [0]", "axes.steps"),
    ],
)
def test_matrix_values_no_one_means_are_refused_with_key_and_line(tmp_path, line, key):
    spec = tmp_path / "matrix.toml"
    spec.write_text(f'[matrix]\nrun = "r"\nprompt = "{{trigger}}"\n\n[axes]\ncheckpoint = [1]\n{line}\n')
    with pytest.raises(ConfigError, match=key) as err:
        load_spec(spec)
    assert err.value.line == 7 and err.value.path == spec


def test_matrix_cfg_inf_is_refused(tmp_path):
    spec = tmp_path / "matrix.toml"
    spec.write_text('[matrix]\nrun = "r"\nprompt = "{trigger}"\ncfg = inf\n\n[axes]\ncheckpoint = [1]\n')
    with pytest.raises(ConfigError, match="matrix.cfg") as err:
        load_spec(spec)
    assert err.value.line == 4


def test_a_newline_in_a_file_name_does_not_split_the_doctor(tmp_path):
    project = caption_project(tmp_path, n=2, images=True)
    (project.dataset_dir / "10_zkx_mira" / "two\nlines.png").write_bytes(b"")
    text = render_text(diagnose(project))
    assert '"10_zkx_mira/two\\nlines.png": empty file (0 bytes)' in text
    assert not any(line.startswith("lines.png") for line in text.splitlines())
    assert captions(project)  # nothing else disturbed
