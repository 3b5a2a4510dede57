"""The sample project: committed, reproducible, small, captioned trigger-first, with a triage inbox."""

from __future__ import annotations

from pathlib import Path

from lorawb.core.layout import caption_path_for, walk_images
from lorawb.core.project import Project
from lorawb.toyworld import reader, sample, world
from lorawb.toyworld.evaluation import eval_prompts
from lorawb.toyworld.pretrain import training_specs

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_project"


def test_committed_files_are_what_the_script_makes(tmp_path):
    sample.make_sample_project(tmp_path, write_toml=True)
    for sub in ("dataset", "inbox"):
        made = sorted(p.relative_to(tmp_path) for p in (tmp_path / sub).rglob("*") if p.is_file())
        committed = sorted(p.relative_to(SAMPLE) for p in (SAMPLE / sub).rglob("*") if p.is_file())
        assert made == committed
        for rel in made:
            assert (tmp_path / rel).read_bytes() == (SAMPLE / rel).read_bytes(), rel
    assert (tmp_path / "lorawb.toml").read_text().replace(tmp_path.name, "sample_project") == (
        SAMPLE / "lorawb.toml"
    ).read_text()


def test_dataset_is_one_character_in_every_context_captioned_trigger_first():
    images = list(walk_images(SAMPLE / "dataset"))
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
    size = sum(p.stat().st_size for p in (SAMPLE / "dataset").rglob("*") if p.is_file())
    size += sum(p.stat().st_size for p in (SAMPLE / "inbox").rglob("*") if p.is_file())
    assert size < 5 * 2**20


def test_inbox_has_good_and_off_model_candidates():
    reads = [reader.read(p) for p in walk_images(SAMPLE / "inbox")]
    on_model = [r for r in reads if (r.hair, r.outfit, r.accessory) == ("blue", "orange", "scarf")]
    assert 2 <= len(on_model) < len(reads)


def test_project_config_points_at_the_toy_model():
    project = Project.load(SAMPLE)
    assert project.trigger == sample.TRIGGER
    assert project.config.project.resolution == 32
    assert project.resolve(project.config.model["path"]) == SAMPLE / sample.MODEL_DIR
    assert (SAMPLE / sample.MODEL_DIR / "model_index.json").is_file()
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


def test_doctor_reports_the_sample_project_healthy(tmp_path):
    # resolution 32 with dataset.bucket_step 8: the doctor must use the trainer's bucket step
    from lorawb.core.doctor import diagnose
    from lorawb.toyworld.check import copy_sample_project

    report = diagnose(Project.load(copy_sample_project(tmp_path / "sp")))
    assert report.images == 32 and not report.low_resolution and not report.unreadable
    assert report.buckets == [("32x32 (1:1)", 32)]
