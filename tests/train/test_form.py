"""The new-run form's model: prefill sources, fields over the TOML, validation, differences."""

from __future__ import annotations

import pytest

from lorawb.core.project import init_project
from lorawb.errors import ConfigError
from lorawb.train import form as F
from lorawb.train.runfolder import RunFolder


@pytest.fixture
def project(tmp_path):
    return init_project(tmp_path / "p", trigger="zkx_mira")


def add_run(project, name, text):
    run = RunFolder(project.runs_dir / name).create()
    run.config.write_text(text)
    return run


def test_sources_are_runs_newest_first_then_lorawb_toml(project):
    add_run(project, "20261125-100000-a", "[train]\nlearning_rate = 1e-4\n")
    add_run(project, "20261125-110000-b", "[train]\nlearning_rate = 5e-5\n")
    add_run(project, "20261125-120000-broken", "[train]\nlearnig_rate = 1\n")
    RunFolder(project.runs_dir / "20261125-130000-noconfig").create()
    sources, problems = F.prefill_sources(project)
    assert [s.label for s in sources] == ["20261125-110000-b", "20261125-100000-a", "lorawb.toml"]
    assert sources[0].config.train.learning_rate == 5e-5
    assert len(problems) == 1 and "train.learnig_rate: unknown key" in problems[0]
    toml = sources[-1]
    assert toml.run_id is None and toml.config.dataset.trigger == "zkx_mira"  # filled from the project
    assert toml.config.train.max_steps == 1000  # lorawb.toml's [train] max_steps


def test_parse_field():
    steps = next(f for f in F.FIELDS if f.key == "train.max_steps")
    lr = next(f for f in F.FIELDS if f.key == "train.learning_rate")
    assert F.parse_field(steps, " 250 ") == 250 and F.parse_field(lr, "1e-4") == 1e-4
    with pytest.raises(ValueError, match="whole number"):
        F.parse_field(steps, "2.5")
    with pytest.raises(ValueError, match="needs a number"):
        F.parse_field(lr, "fast")
    with pytest.raises(ValueError, match="needs a value"):
        F.parse_field(lr, "")


def test_set_in_toml_keeps_comments_and_adds_tables():
    text = "# mine\n[train]\nlearning_rate = 1e-4 # my lr\n"
    out = F.set_in_toml(text, "train.learning_rate", 5e-5)
    assert out.startswith("# mine\n") and "learning_rate = 5e-05 # my lr" in out
    out = F.set_in_toml(out, "network.rank", 32)
    assert F.parse_toml(out)["network"] == {"rank": 32}


def test_validate_names_the_key_and_line(project):
    text = F.project_source(project).config.to_toml()
    assert F.validate(text, project).train.max_steps == 1000
    bad = F.set_in_toml(text, "train.batch_size", 0)
    with pytest.raises(ConfigError) as exc:
        F.validate(bad, project)
    assert F.error_key(exc.value) == "train.batch_size"
    assert bad.splitlines()[exc.value.line - 1].startswith("batch_size = 0")
    with pytest.raises(ConfigError, match="steps and epochs are both 0"):
        F.validate(F.set_in_toml(text, "train.max_steps", 0), project)
    with pytest.raises(ConfigError, match="invalid TOML") as exc:
        F.parse_toml("[train\n")
    assert exc.value.line == 1


def test_differences_from_the_source(project):
    source = F.project_source(project)
    text = source.config.to_toml()
    assert F.differences(text, source, project) == []
    text = F.set_in_toml(text, "train.learning_rate", 3e-4)
    text = F.set_in_toml(text, "network.rank", 4)
    rows = F.differences(text, source, project)
    assert [(r.key, r.b) for r in rows] == [("network.rank", 4), ("train.learning_rate", 3e-4)]
    # 1e-4 written as 0.0001 is not a change
    same = F.set_in_toml(source.config.to_toml(), "train.learning_rate", 0.0001)
    assert F.differences(same, source, project) == []


def test_prior_settings_are_fields_and_the_guard_counts_them(project):
    keys = {f.key for f in F.FIELDS}
    assert {"dataset.prior_loss_weight", "train.preservation", "train.preservation_class"} <= keys
    field = next(f for f in F.FIELDS if f.key == "train.preservation_class")
    assert F.parse_field(field, " woman ") == "woman"
    source = F.project_source(project)
    text = F.set_in_toml(source.config.to_toml(), "train.preservation", "output")
    with pytest.raises(ConfigError, match="needs the class word") as exc:  # as typed, with its line
        F.validate(text, project)
    assert F.error_key(exc.value) == "train.preservation_class"
    assert text.splitlines()[exc.value.line - 1].startswith("preservation_class")
    text = F.set_in_toml(text, "train.preservation_class", "woman")
    assert F.validate(text, project).train.preservation_class == "woman"
    rows = F.differences(text, source, project)
    assert [r.key for r in rows] == ["train.preservation", "train.preservation_class"]  # two changes: the warning


def test_a_reg_folder_made_since_the_source_run_is_a_difference(project):
    source = F.project_source(project)  # no reg/: frozen as reg_path = "none"
    assert source.config.dataset.reg_path == "none"
    (project.root / "reg" / "1_woman").mkdir(parents=True)
    now = F.project_source(project)
    rows = F.differences(now.config.to_toml(), source, project)
    assert [r.key for r in rows] == ["dataset.reg_path"] and rows[0].a == "none"


# --- memory presets --------------------------------------------------------------------------------


def test_presets_write_valid_configs_whose_caches_apply(project):
    from lorawb.train.data import captions_are_fixed

    base = F.project_source(project).config.to_toml()
    # A config the caches could not serve: shuffled tags, random crops, a trained text encoder.
    for key, value in (
        ("dataset.shuffle_tags", True),
        ("dataset.tag_dropout", 0.1),
        ("dataset.crop", "random"),
        ("network.train_text_encoder", True),
        ("train.batch_size", 8),
    ):
        base = F.set_in_toml(base, key, value)
    names = [p.name for p in F.PRESETS]
    assert {"SDXL 12 GB", "SDXL 24 GB", "Flux 24 GB", "Flux 16 GB", "Flux 12 GB", "Chroma 24 GB"} <= set(names)
    got = {}
    for preset in F.PRESETS:
        text = F.apply_preset(base, preset)
        cfg = F.validate(text, project)
        assert captions_are_fixed(cfg.dataset) and cfg.dataset.crop == "center"  # both caches apply
        assert cfg.dataset.cache_latents and cfg.dataset.cache_text and cfg.train.offload_frozen
        assert not cfg.network.train_text_encoder and cfg.dataset.resolution == 1024
        assert cfg.train.mixed_precision == "bf16"
        assert cfg.train.max_steps == 1000 and cfg.dataset.trigger == "zkx_mira"  # the rest is kept
        assert "# " in text and text.count("\n") >= base.count("\n")  # the comments stay
        got[preset.name] = cfg.train
    small, big = got["SDXL 12 GB"], got["SDXL 24 GB"]
    assert (small.gradient_checkpointing, small.optimizer, small.batch_size) == (True, "adamw8bit", 1)
    assert (big.gradient_checkpointing, big.optimizer, big.batch_size) == (False, "adamw", 2)


def test_every_preset_key_is_a_config_key():
    from lorawb.train.config import TrainConfig

    data = TrainConfig().model_dump()
    for preset in F.PRESETS:
        for key, _ in preset.values:
            section, name = key.split(".")
            assert name in data[section], key
