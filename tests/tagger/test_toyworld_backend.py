"""The toy world's reader as a tagger: the sample project's inbox tagged honestly, the invariant look left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorawb.cli import main
from lorawb.core.project import Project
from lorawb.toyworld.sample import make_sample_project


@pytest.fixture
def sample(tmp_path) -> Project:
    return Project.load(make_sample_project(tmp_path / "sample_project", write_toml=True))


def test_replace_reads_what_each_candidate_shows(sample: Project, capsys):
    assert sample.config.tagger.model == "toyworld"
    assert sample.config.tagger.invariant == ["blue hair", "orange outfit", "scarf"]
    assert main(["tag", str(sample.root), "--inbox", "--mode", "replace"]) == 0
    inbox = Path(sample.inbox_dir)
    # On-model candidates keep the caption the dataset's captions have (the look is the trigger's) ...
    assert (inbox / "cand_01.txt").read_text() == "zkx_mira, beach, outlined, arms up\n"
    # ... off-model ones name what differs, so triage (or a has: filter) can find them.
    assert (inbox / "cand_03.txt").read_text() == "zkx_mira, red hair, forest, outlined, arms up\n"
    assert (inbox / "cand_05.txt").read_text() == "zkx_mira, green outfit, bar, flat, arms up\n"
    out = capsys.readouterr().out
    assert "2 of 7 captions to change" in out and "wrote 2 captions" in out


def test_without_the_invariant_list_every_attribute_is_tagged(sample: Project, capsys):
    for p in sample.inbox_dir.glob("*.txt"):
        p.unlink()
    assert main(["tag", str(sample.root), "--where", "in:inbox", "--no-invariant", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "+zkx_mira, blue hair, orange outfit, scarf, beach, outlined, arms up\n" in out
    assert "#     -  + blue hair  (added)\n" in out  # the reader measures no confidence: none is shown
    assert "confidence: none measured" in out
