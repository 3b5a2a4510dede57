"""The sample project: committed, reproducible, small, captioned trigger-first, with a triage inbox.

The tests read the generator's output (the ``sample_pristine`` fixture) and git's committed
blobs, never the working tree's sample_project/, which the README tour changes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from lorawb.core.layout import caption_path_for, walk_images
from lorawb.core.project import Project
from lorawb.toyworld import reader, sample, world
from lorawb.toyworld.evaluation import eval_prompts
from lorawb.toyworld.pretrain import training_specs

ROOT = Path(__file__).resolve().parents[2]


def _committed_blobs(sub: str) -> dict[str, str]:
    """{path under sample_project/: git blob id} of what is committed (the index), not the working tree."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-s", "--", f"sample_project/{sub}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    blobs = {}
    for line in out.splitlines():
        meta, path = line.split("\t", 1)
        blobs[path.removeprefix("sample_project/")] = meta.split()[1]
    return blobs


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_committed_files_are_what_the_script_makes(tmp_path):
    sample.make_sample_project(tmp_path, write_toml=True, name="sample_project")
    made = {
        p.relative_to(tmp_path).as_posix(): _blob_id(p.read_bytes())
        for sub in ("dataset", "inbox")
        for p in (tmp_path / sub).rglob("*")
        if p.is_file()
    }
    committed = {**_committed_blobs("dataset"), **_committed_blobs("inbox")}
    assert made == committed
    assert {"lorawb.toml": _blob_id((tmp_path / "lorawb.toml").read_bytes())} == _committed_blobs("lorawb.toml")


def test_dataset_is_one_character_in_every_context_captioned_trigger_first(sample_pristine):
    images = list(walk_images(sample_pristine / "dataset"))
    assert 24 <= len(images) <= 40
    contexts, styles = set(), set()
    for img in images:
        text = caption_path_for(img).read_text(encoding="utf-8").strip()
        tags = text.split(", ")
        assert tags[0] == sample.TRIGGER
        assert not any(t.endswith((" hair", " outfit")) for t in tags)  # the look is bound to the trigger
        r = reader.read(img)
        assert (r.hair, r.outfit, r.accessory) == ("blue", "orange", "scarf")
        assert r.context in tags
        contexts.add(r.context)
        styles.add(r.style)
    assert contexts == set(world.CONTEXTS)
    assert len(styles) >= 3
    size = sum(p.stat().st_size for p in (sample_pristine / "dataset").rglob("*") if p.is_file())
    size += sum(p.stat().st_size for p in (sample_pristine / "inbox").rglob("*") if p.is_file())
    assert size < 5 * 2**20


def test_inbox_has_good_and_off_model_candidates(sample_pristine):
    reads = [reader.read(p) for p in walk_images(sample_pristine / "inbox")]
    on_model = [r for r in reads if (r.hair, r.outfit, r.accessory) == ("blue", "orange", "scarf")]
    assert 2 <= len(on_model) < len(reads)


def test_project_config_points_at_the_toy_model(sample_pristine):
    project = Project.load(sample_pristine)
    assert project.trigger == sample.TRIGGER
    assert project.config.project.resolution == 32
    assert project.resolve(project.config.model["path"]) == sample_pristine / sample.MODEL_DIR
    assert (sample_pristine / sample.MODEL_DIR / "model_index.json").is_file()
    assert set(project.config.tags.groups["context"]) == set(world.CONTEXTS)
    prompts = project.config.sample["prompts"]
    assert all(any(c in p for p in prompts) for c in world.CONTEXTS)
    assert project.config.sample["cfg"] <= 3


def test_the_character_is_never_shown_in_pretraining():
    specs = training_specs(5000, 0, [w for _, w in eval_prompts()])
    assert not any(
        all(getattr(s, k) == v for k, v in rule.items()) for s in specs for rule in sample.NEVER_IN_PRETRAINING
    )
    assert any(s.hair == "blue" for s in specs) and any(s.outfit == "orange" for s in specs)


def test_doctor_reports_the_sample_project_healthy(sample_project):
    # resolution 32 with dataset.bucket_step 8: the doctor must use the trainer's bucket step
    from lorawb.train.doctor import doctor

    report = doctor(Project.load(sample_project))
    assert report.images == 32 and not report.low_resolution and not report.unreadable
    assert report.buckets == [("32x32 (1:1)", 32)]
